#!/usr/bin/env bash
# The virtual boards' tools (design.md §3): QEMU for rv32imc (ESP32-C3 ISA) and Cortex-M4F, and
# their cross compilers; clang with libFuzzer for the protocol fuzz test. Installs only what is missing; needs root or sudo and the Debian archive.
set -euo pipefail
need=()
command -v qemu-system-riscv32 >/dev/null || need+=(qemu-system-misc)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v riscv64-unknown-elf-gcc >/dev/null || need+=(gcc-riscv64-unknown-elf)
[ -e /usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs ] || dpkg -s picolibc-riscv64-unknown-elf >/dev/null 2>&1 \
  || need+=(picolibc-riscv64-unknown-elf)
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v cc >/dev/null || need+=(gcc)
# clang + compiler-rt: libFuzzer for the protocol parser's fuzz test (tests/test_proto.py)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-dev)
if [ ${#need[@]} -eq 0 ]; then
  echo "toolchains: all present"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "toolchains: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
