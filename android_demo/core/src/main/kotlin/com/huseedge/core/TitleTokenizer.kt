package com.huseedge.core

import java.io.File
import java.text.Normalizer

/**
 * Titles to fixed-length int32 token ids: specification version 1 of `huse_edge/tokenizer.py`, token for token.
 * 1. NFKC; 2. lower-case ASCII A-Z only; 3. tokens are maximal runs of [a-z0-9]; 4. id = line of `vocab.txt`,
 * unknown tokens 1 ([UNK]); 5. truncate to `maxLength`, right-pad with 0 ([PAD]).
 */
class TitleTokenizer(private val vocab: List<String>, val maxLength: Int) {
    private val ids: Map<String, Int> = vocab.withIndex().associate { it.value to it.index }

    init {
        if (vocab.size < 2 || vocab[0] != PAD || vocab[1] != UNK) throw FormatException("vocabulary must start with $PAD and $UNK")
        if (ids.size != vocab.size) throw FormatException("vocabulary has duplicate tokens")
        if (maxLength < 1) throw FormatException("max_length must be positive")
    }

    val size: Int get() = vocab.size

    fun encode(title: String): IntArray {
        val out = IntArray(maxLength)
        var count = 0
        for (token in tokens(title)) {
            if (count == maxLength) break
            out[count++] = ids[token] ?: UNK_ID
        }
        return out
    }

    companion object {
        const val SPEC_VERSION = 1
        const val PAD = "[PAD]"
        const val UNK = "[UNK]"
        const val UNK_ID = 1

        fun tokens(title: String): List<String> {
            val normalised = Normalizer.normalize(title, Normalizer.Form.NFKC)
            val out = ArrayList<String>()
            val current = StringBuilder()
            for (c in normalised) {
                val lower = if (c in 'A'..'Z') c + ('a' - 'A') else c
                if (lower in 'a'..'z' || lower in '0'..'9') {
                    current.append(lower)
                } else if (current.isNotEmpty()) {
                    out.add(current.toString())
                    current.setLength(0)
                }
            }
            if (current.isNotEmpty()) out.add(current.toString())
            return out
        }

        /** `vocab.txt` + `tokenizer.json` of a bundle directory. */
        fun load(directory: File): TitleTokenizer {
            val spec = Json.obj(Json.parse(File(directory, "tokenizer.json").readText()), "tokenizer.json")
            val version = (spec["version"] as? Double)?.toInt()
            if (version != SPEC_VERSION) throw FormatException("tokenizer spec version $version, this app reads $SPEC_VERSION")
            val maxLength = (spec["max_length"] as? Double)?.toInt() ?: throw FormatException("tokenizer.json: no max_length")
            val lines = File(directory, "vocab.txt").readText().split("\n").toMutableList()
            if (lines.isNotEmpty() && lines.last().isEmpty()) lines.removeAt(lines.size - 1)
            return TitleTokenizer(lines, maxLength)
        }
    }
}
