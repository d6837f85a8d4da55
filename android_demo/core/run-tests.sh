#!/usr/bin/env bash
# Compiles the platform-free Kotlin core (src/main) and its JUnit tests (src/test, plus the JNA LiteRT parity
# test in src/litertTest) with Debian's kotlin compiler, no Gradle, and runs them. Closing line:
# "N passed, N failed, N skipped".
#
#   android_demo/core/run-tests.sh --bundle BUNDLE --golden GOLDEN [--index INDEX] [--litert libLiteRt.so]
#
# BUNDLE/GOLDEN/INDEX come from `huse-edge export`, `huse-edge android golden`, `huse-edge index`.
# Needs the Debian packages kotlin, junit4 and libjna-java; as root (as in CI) they are installed when missing.
set -euo pipefail
properties=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) properties+=("-Dhuse.bundle=$(realpath "$2")"); shift 2 ;;
        --golden) properties+=("-Dhuse.golden=$(realpath "$2")"); shift 2 ;;
        --index) properties+=("-Dhuse.index=$(realpath "$2")"); shift 2 ;;
        --litert) properties+=("-Dhuse.litert=$(realpath "$2")"); shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")"  # after the paths above are made absolute

JARS=(/usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar /usr/share/java/jna.jar)
# true when kotlinc or one of the jars is absent
missing() {
    command -v kotlinc >/dev/null || return 0
    for jar in "${JARS[@]}"; do [ -f "$jar" ] || return 0; done
    return 1
}
if missing; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kotlin junit4 libjna-java >/dev/null; }
        # once more after a pause: a mirror that fails one update is the usual cause, and must not pass unnoticed
        install || { sleep 20; install; } || { echo "apt-get could not install kotlin junit4 libjna-java"; echo "0 passed, 1 failed"; exit 1; }
    else
        echo "kotlin, junit4 and libjna-java are needed: sudo apt-get install kotlin junit4 libjna-java" >&2
        exit 3
    fi
fi

STDLIB=$(dirname "$(realpath "$(command -v kotlinc)")")/../lib/kotlin-stdlib.jar
CLASSPATH=$(IFS=:; echo "${JARS[*]}"):$STDLIB
rm -rf build/classes && mkdir -p build/classes
kotlinc -nowarn src/main/kotlin src/test/kotlin src/litertTest/kotlin -cp "$CLASSPATH" -d build/classes 2>&1 \
    | grep -v -E "^OpenJDK 64-Bit Server VM warning" || true
[ -f build/classes/com/huseedge/core/TestMainKt.class ] || { echo "compilation failed"; echo "0 passed, 1 failed"; exit 1; }
TESTS=$(cd build/classes && find . -name "*Test.class" ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
# shellcheck disable=SC2086
java "${properties[@]}" -cp "build/classes:$CLASSPATH" com.huseedge.core.TestMainKt $TESTS
