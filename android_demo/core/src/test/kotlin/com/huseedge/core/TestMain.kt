package com.huseedge.core

import org.junit.runner.JUnitCore
import org.junit.runner.notification.Failure
import kotlin.system.exitProcess

/** Runs the given test classes (args) and ends with the closing line `N passed, N failed, N skipped`. */
fun main(args: Array<String>) {
    val classes = args.map { Class.forName(it) }.toTypedArray()
    val result = JUnitCore.runClasses(*classes)
    for (failure: Failure in result.failures) {
        println("FAILED ${failure.testHeader}: ${failure.message}")
        failure.trace.lineSequence().take(8).forEach { println("    $it") }
    }
    val failed = result.failureCount
    val skipped = result.ignoreCount + result.assumptionFailureCount
    val passed = result.runCount - failed - result.assumptionFailureCount
    println("$passed passed, $failed failed, $skipped skipped")
    exitProcess(if (failed == 0) 0 else 1)
}
