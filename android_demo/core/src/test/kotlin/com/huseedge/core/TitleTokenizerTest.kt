package com.huseedge.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class TitleTokenizerTest {
    @Test
    fun specExamples() {
        assertEquals(listOf("nike", "men", "s", "air", "max", "90"), TitleTokenizer.tokens("Nike Men's Air-Max 90"))
        assertEquals(listOf("women", "top"), TitleTokenizer.tokens("\uFF37\uFF2F\uFF2D\uFF25\uFF2E \uFF34\uFF4F\uFF50"))
        assertEquals(listOf("caf", "cr", "me", "ber"), TitleTokenizer.tokens("caf\u00e9 cr\u00e8me \u00dcBER"))
        val tokenizer = TitleTokenizer(listOf("[PAD]", "[UNK]", "red", "shirt"), 4)
        assertArrayEquals(intArrayOf(2, 3, 1, 0), tokenizer.encode("Red SHIRT, blue"))
        assertArrayEquals(intArrayOf(2, 2, 2, 2), tokenizer.encode("red red red red red"))
    }

    @Test
    fun matchesPythonOnEveryGoldenTitle() {
        val tokenizer = TitleTokenizer.load(Golden.bundleDir())
        val products = Golden.lines("products.jsonl")
        val expected = Golden.npy("tokens").int32()
        for ((i, product) in products.withIndex()) {
            val ids = tokenizer.encode(product["title"] as String)
            assertArrayEquals("title of product ${product["id"]}: ${product["title"]}",
                expected.copyOfRange(i * tokenizer.maxLength, (i + 1) * tokenizer.maxLength), ids)
        }
        for (case in Golden.lines("tokenizer_cases.jsonl")) {
            @Suppress("UNCHECKED_CAST")
            val ids = (case["ids"] as List<Double>).map { it.toInt() }.toIntArray()
            assertArrayEquals("tokenizer case ${case["text"]}", ids, tokenizer.encode(case["text"] as String))
        }
    }
}
