package com.huseedge.core

import java.io.File

/** Classes of the bundle's `labels.txt`: line i is class i's full path, levels joined by " > ". */
class LabelHierarchy(val paths: List<List<String>>) {
    init {
        if (paths.isEmpty()) throw FormatException("labels.txt has no classes")
        if (paths.map { it.size }.toSet().size != 1) throw FormatException("labels.txt: all paths must have the same depth")
    }

    val size: Int get() = paths.size

    fun leaf(classId: Int): String = paths[classId].last()

    companion object {
        const val SEPARATOR = " > "

        fun load(file: File): LabelHierarchy =
            LabelHierarchy(file.readLines(Charsets.UTF_8).filter { it.isNotEmpty() }.map { it.split(SEPARATOR) })
    }
}
