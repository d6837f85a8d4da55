plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.huseedge.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "com.huseedge.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    buildFeatures {
        viewBinding = true
    }
    androidResources {
        noCompress += listOf("tflite", "hidx")  // the model is memory-mapped; the index is read as a zip
    }
}

// The bundle is produced on the Python side; this task (or `huse-edge android assets`) copies it into assets:
//   ./gradlew :app:copyHuseAssets -PhuseBundle=/path/to/bundle -PhuseIndex=/path/to/products.hidx
tasks.register<Exec>("copyHuseAssets") {
    val bundle = project.findProperty("huseBundle")?.toString()
        ?: throw GradleException("pass -PhuseBundle=/path/to/bundle (and optionally -PhuseIndex=...)")
    val index = project.findProperty("huseIndex")?.toString()
    val out = layout.projectDirectory.dir("src/main/assets/huse").asFile.path
    commandLine(listOf("huse-edge", "android", "assets", bundle, "--out", out) + (index?.let { listOf("--index", it) } ?: emptyList()))
}

dependencies {
    implementation(project(":core"))
    implementation("com.google.ai.edge.litert:litert:2.3.0")
    implementation("com.google.ai.edge.litert:litert-gpu:2.3.0")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("com.google.android.material:material:1.12.0")
}
