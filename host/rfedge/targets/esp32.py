"""ESP32 (the original): Xtensa LX6 dual core with a single-precision FPU."""
NAME = "esp32"
CHIP_NAME = "ESP32"
CPU = "Xtensa LX6"
ISA = "xtensa-lx6"
CORES = 2
CLOCK_HZ = 160_000_000
MAX_CLOCK_HZ = 240_000_000
SRAM_BYTES = 520 * 1024
FPU = "single"
BOOTLOADER_OFFSET = 0x1000      # the ESP32 ROM boots from 0x1000
PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000
FLASH_SIZE = "4MB"
IDF_TARGET = "esp32"
PLATFORMIO_BOARD = "esp32dev"
ESPTOOL_CHIP_ID = None          # no GET_SECURITY_INFO in its ROM: detected by the magic value 0x00F01D83
NOTES = "double is soft-float; RFE_DSP_SINGLE_PRECISION uses the FPU (+-1 LSB vs the Python DSP)"
