package com.huseedge.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.io.File

class HuseBundleTest {
    /** Deleted after each test: every copy is a whole 65 MB bundle. */
    @get:Rule
    val temporary = TemporaryFolder()

    @Test
    fun loadsAndChecksEveryHash() {
        val bundle = HuseBundle.load(Golden.bundleDir())
        assertTrue(bundle.modelFile("int8").isFile)
        assertEquals(bundle.labels.size, (bundle.manifest["num_classes"] as Double).toInt())
    }

    @Test
    fun refusesATamperedFileByName() {
        val copy = copyOf(Golden.bundleDir())
        File(copy, "labels.txt").appendText("Extra > Class > Here\n")
        assertFails("labels.txt does not match its sha256") { HuseBundle.load(copy) }
    }

    @Test
    fun refusesAnotherFormatVersion() {
        val copy = copyOf(Golden.bundleDir())
        val manifest = File(copy, "manifest.json")
        manifest.writeText(manifest.readText().replace("\"format_version\": 1", "\"format_version\": 99"))
        assertFails("bundle format version 99") { HuseBundle.load(copy) }
    }

    @Test
    fun refusesANewerPreprocessingSpec() {
        val copy = copyOf(Golden.bundleDir())
        val preprocessing = File(copy, "preprocessing.json")
        val signed = HuseBundle.sha256(preprocessing)
        val spec = ImagePreprocessor.SPEC_VERSION
        preprocessing.writeText(preprocessing.readText().replace("\"version\": $spec", "\"version\": ${spec + 1}"))
        val manifest = File(copy, "manifest.json")
        manifest.writeText(manifest.readText().replace(signed, HuseBundle.sha256(preprocessing)))
        assertFails("preprocessing spec version ${spec + 1}") { HuseBundle.load(copy) }
    }

    private fun copyOf(source: File): File {
        val target = temporary.newFolder("bundle")
        source.copyRecursively(target, overwrite = true)
        return target
    }

    private fun assertFails(message: String, block: () -> Unit) {
        try {
            block()
            fail("expected a FormatException containing '$message'")
        } catch (error: FormatException) {
            assertTrue("'${error.message}' should contain '$message'", error.message!!.contains(message))
        }
    }
}
