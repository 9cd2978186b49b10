"""ESP32-S3: Xtensa LX7 dual core with a single-precision FPU (and vector extensions)."""
NAME = "esp32s3"
CHIP_NAME = "ESP32-S3"
CPU = "Xtensa LX7"
ISA = "xtensa-lx7"
CORES = 2
CLOCK_HZ = 240_000_000
MAX_CLOCK_HZ = 240_000_000
SRAM_BYTES = 512 * 1024
FPU = "single"
BOOTLOADER_OFFSET = 0x0
PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000
FLASH_SIZE = "4MB"
IDF_TARGET = "esp32s3"
PLATFORMIO_BOARD = "esp32-s3-devkitc-1"
ESPTOOL_CHIP_ID = 9
NOTES = "double is soft-float; RFE_DSP_SINGLE_PRECISION uses the FPU (+-1 LSB vs the Python DSP)"
