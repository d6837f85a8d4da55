// The platform-free core: plain Kotlin/JVM, no Android dependency. Here it is compiled and tested with
// `./run-tests.sh` (Debian's kotlinc + JUnit, no Gradle); in Android Studio it is this Gradle module.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

sourceSets {
    test {
        kotlin.srcDir("src/litertTest/kotlin")
    }
}

dependencies {
    testImplementation("junit:junit:4.13.2")
    testImplementation("net.java.dev.jna:jna:5.13.0")
}

tasks.test {
    // Same inputs as run-tests.sh: -Phuse.bundle=... -Phuse.golden=... -Phuse.index=... -Phuse.litert=...
    listOf("huse.bundle", "huse.golden", "huse.index", "huse.litert").forEach { key ->
        project.findProperty(key)?.let { systemProperty(key, it.toString()) }
    }
}
