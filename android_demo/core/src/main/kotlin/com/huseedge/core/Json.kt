package com.huseedge.core

/**
 * A small JSON reader for the bundle's own files (manifest, tokenizer spec, index header, product lines), so the
 * core module needs nothing beyond the Kotlin standard library on the JVM and on Android alike.
 * Objects become [Map], arrays [List], numbers [Double], plus [String], [Boolean] and null.
 */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        if (!reader.atEnd()) throw FormatException("unexpected text after the JSON value at offset ${reader.pos}")
        return value
    }

    @Suppress("UNCHECKED_CAST")
    fun obj(value: Any?, what: String): Map<String, Any?> =
        value as? Map<String, Any?> ?: throw FormatException("$what: expected a JSON object")

    private class Reader(val text: String) {
        var pos = 0

        fun atEnd() = pos >= text.length

        fun skipSpace() {
            while (pos < text.length && text[pos].isWhitespace()) pos++
        }

        fun value(): Any? {
            skipSpace()
            if (atEnd()) throw FormatException("unexpected end of JSON")
            return when (val c = text[pos]) {
                '{' -> objectValue()
                '[' -> arrayValue()
                '"' -> stringValue()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) numberValue() else throw FormatException("unexpected '$c' at offset $pos")
            }
        }

        private fun literal(word: String, result: Any?): Any? {
            if (!text.startsWith(word, pos)) throw FormatException("bad literal at offset $pos")
            pos += word.length
            return result
        }

        private fun expect(c: Char) {
            skipSpace()
            if (atEnd() || text[pos] != c) throw FormatException("expected '$c' at offset $pos")
            pos++
        }

        private fun objectValue(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            expect('{')
            skipSpace()
            if (!atEnd() && text[pos] == '}') { pos++; return out }
            while (true) {
                skipSpace()
                val key = stringValue()
                expect(':')
                out[key] = value()
                skipSpace()
                if (atEnd()) throw FormatException("unterminated object")
                if (text[pos] == ',') { pos++; continue }
                expect('}')
                return out
            }
        }

        private fun arrayValue(): List<Any?> {
            val out = ArrayList<Any?>()
            expect('[')
            skipSpace()
            if (!atEnd() && text[pos] == ']') { pos++; return out }
            while (true) {
                out.add(value())
                skipSpace()
                if (atEnd()) throw FormatException("unterminated array")
                if (text[pos] == ',') { pos++; continue }
                expect(']')
                return out
            }
        }

        private fun stringValue(): String {
            expect('"')
            val out = StringBuilder()
            while (true) {
                if (atEnd()) throw FormatException("unterminated string")
                val c = text[pos++]
                when (c) {
                    '"' -> return out.toString()
                    '\\' -> {
                        if (atEnd()) throw FormatException("unterminated escape")
                        when (val e = text[pos++]) {
                            '"', '\\', '/' -> out.append(e)
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000C')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (pos + 4 > text.length) throw FormatException("bad unicode escape")
                                out.append(text.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }
                            else -> throw FormatException("bad escape '\\$e'")
                        }
                    }
                    else -> out.append(c)
                }
            }
        }

        private fun numberValue(): Double {
            val start = pos
            while (pos < text.length && (text[pos].isDigit() || text[pos] in "+-.eE")) pos++
            return text.substring(start, pos).toDoubleOrNull() ?: throw FormatException("bad number at offset $start")
        }
    }
}

/** A bundle or index file that does not follow its documented format. */
class FormatException(message: String) : Exception(message)
