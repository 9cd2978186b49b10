/*
 * board_esp_idf.c - the rfedge board layer for ESP32, ESP32-S3 and ESP32-C3 (ESP-IDF >= 5.1).
 *
 * - UART0 carries the rfedge protocol (mcu/core/proto): bytes in -> rfe_device_feed(), the
 *   device's answers out through rfe_board_write().  The console is off (sdkconfig.defaults).
 * - Wi-Fi as a station (joins CONFIG_RFEDGE_WIFI_SSID and pings the gateway at
 *   CONFIG_RFEDGE_PING_HZ so that packets, and CSI, keep coming) or as an access point.
 * - CSI: esp_wifi_set_csi_config() (LLTF + HT-LTF + STBC-HT-LTF) and esp_wifi_set_csi_rx_cb();
 *   the callback (Wi-Fi task) only copies wifi_csi_info_t into a static queue; the main task
 *   hands each packet to rfe_device_csi_packet(), which prints it (capture mode), feeds the
 *   stream detector or keeps it for the window DSP (mcu/core/dsp).  All rfe_device_* calls
 *   happen in the main task.
 * - rfe_board_counter(): esp_cpu_get_cycle_count() (CPU cycles of the core the main task is
 *   pinned to, CONFIG_ESP_MAIN_TASK_AFFINITY_CPU0), extended to 64 bits.
 *
 * Not built on the machines rfedge is developed on (no Espressif toolchain there): written against
 * the ESP-IDF 5.x API, see README "Flashing and on-device DSP".
 */
#include <stdint.h>
#include <string.h>

#include "driver/uart.h"
#include "esp_cpu.h"
#include "esp_event.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "lwip/ip_addr.h"
#include "nvs_flash.h"
#include "ping/ping_sock.h"

#include "rfe_device.h"

#define RFE_UART UART_NUM_0
#define CSI_QUEUE_LEN 16

/* ---- rfe_board_* ---------------------------------------------------------------------------- */

void rfe_board_write(const uint8_t *data, size_t n)
{
    uart_write_bytes(RFE_UART, (const char *)data, n);   /* blocks until all is in the TX buffer */
}

uint64_t rfe_board_counter(void)
{
    /* the 32-bit CCOUNT wraps every 18 s at 240 MHz: extend it (called far more often than that
     * while anything is timed) */
    static uint32_t last;
    static uint64_t high;
    const uint32_t now = (uint32_t)esp_cpu_get_cycle_count();
    if (now < last) high += (uint64_t)1 << 32;
    last = now;
    return high | now;
}

uint32_t rfe_board_ram_bytes(void) { return 0; }     /* unknown at run time: `idf.py size` reports it */
uint32_t rfe_board_flash_bytes(void) { return 0; }

/* ---- CSI: Wi-Fi task -> queue -> main task ----------------------------------------------------- */

/* the packet as the core wants it, and a copy of its buffer (pkt.buf is set when it is taken out) */
typedef struct {
    rfe_csi_packet_t pkt;
    int8_t buf[RFE_CSI_MAX_LEN];
} csi_item_t;

static StaticQueue_t csi_queue_struct;
static uint8_t csi_queue_storage[CSI_QUEUE_LEN * sizeof(csi_item_t)];
static QueueHandle_t csi_queue;
static volatile uint32_t csi_dropped;
static uint8_t peer_mac[6];
static volatile int peer_known;

static void csi_cb(void *ctx, wifi_csi_info_t *info)
{
    static csi_item_t it;      /* only the Wi-Fi task calls this: static keeps 660 B off its stack */
    const wifi_pkt_rx_ctrl_t *rx = &info->rx_ctrl;
    (void)ctx;
    if (info->buf == NULL || info->len == 0 || info->len > RFE_CSI_MAX_LEN) return;
#if CONFIG_RFEDGE_WIFI_STA
    /* only the AP's packets: one link, one channel */
    if (!peer_known || memcmp(info->mac, peer_mac, 6) != 0) return;
#endif
    it.pkt.timestamp_us = rx->timestamp;
    it.pkt.rssi = (int8_t)rx->rssi;
    it.pkt.noise_floor = (int8_t)rx->noise_floor;
    it.pkt.channel = (uint8_t)rx->channel;
    it.pkt.secondary_channel = (uint8_t)rx->secondary_channel;
    it.pkt.sig_mode = (uint8_t)rx->sig_mode;
    it.pkt.mcs = (uint8_t)rx->mcs;
    it.pkt.cwb = (uint8_t)rx->cwb;
    it.pkt.flags = (uint8_t)((info->first_word_invalid ? RFE_CSI_F_FIRST_WORD_INVALID : 0) |
                             (rx->stbc ? RFE_CSI_F_STBC : 0) | (rx->sgi ? RFE_CSI_F_SGI : 0) |
                             (rx->smoothing ? RFE_CSI_F_SMOOTHING : 0) | (rx->not_sounding ? RFE_CSI_F_NOT_SOUNDING : 0) |
                             (rx->aggregation ? RFE_CSI_F_AGGREGATION : 0) | (rx->fec_coding ? RFE_CSI_F_FEC_CODING : 0));
    memcpy(it.pkt.mac, info->mac, 6);
    it.pkt.len = info->len;
    it.pkt.buf = NULL;
    memcpy(it.buf, info->buf, info->len);
    if (xQueueSend(csi_queue, &it, 0) != pdTRUE) csi_dropped++;   /* never block the Wi-Fi task */
}

static void csi_start(void)
{
    wifi_csi_config_t cfg = {
        .lltf_en = true,
        .htltf_en = true,
        .stbc_htltf2_en = true,
        .ltf_merge_en = true,
        .channel_filter_en = false,
        .manu_scale = false,
        .shift = 0,
    };
    ESP_ERROR_CHECK(esp_wifi_set_csi_config(&cfg));
    ESP_ERROR_CHECK(esp_wifi_set_csi_rx_cb(csi_cb, NULL));
    ESP_ERROR_CHECK(esp_wifi_set_csi(true));
}

/* ---- Wi-Fi ------------------------------------------------------------------------------------- */

#if CONFIG_RFEDGE_WIFI_STA
static esp_ping_handle_t ping;

static void ping_gateway(const esp_netif_ip_info_t *ip)
{
    esp_ping_config_t pc = ESP_PING_DEFAULT_CONFIG();
    esp_ping_callbacks_t cbs = {0};
    if (ping != NULL) {
        esp_ping_stop(ping);
        esp_ping_delete_session(ping);
        ping = NULL;
    }
    pc.count = ESP_PING_COUNT_INFINITE;
    pc.interval_ms = 1000 / CONFIG_RFEDGE_PING_HZ;
    pc.data_size = 1;
    pc.task_stack_size = 3072;
    pc.target_addr.type = IPADDR_TYPE_V4;
    pc.target_addr.u_addr.ip4.addr = ip->gw.addr;
    if (esp_ping_new_session(&pc, &cbs, &ping) == ESP_OK) esp_ping_start(ping);
}
#endif

static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
#if CONFIG_RFEDGE_WIFI_STA
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_CONNECTED) {
        const wifi_event_sta_connected_t *ev = (const wifi_event_sta_connected_t *)data;
        memcpy(peer_mac, ev->bssid, 6);
        peer_known = 1;
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        peer_known = 0;
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *ev = (const ip_event_got_ip_t *)data;
        ping_gateway(&ev->ip_info);
    }
#else
    (void)base;
    (void)id;
    (void)data;
#endif
}

static void wifi_start(void)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t wc;
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_wifi_set_storage(WIFI_STORAGE_RAM));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_event, NULL));
    memset(&wc, 0, sizeof wc);
#if CONFIG_RFEDGE_WIFI_STA
    esp_netif_create_default_wifi_sta();
    strncpy((char *)wc.sta.ssid, CONFIG_RFEDGE_WIFI_SSID, sizeof wc.sta.ssid - 1);
    strncpy((char *)wc.sta.password, CONFIG_RFEDGE_WIFI_PASSWORD, sizeof wc.sta.password - 1);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &wc));
    ESP_ERROR_CHECK(esp_wifi_start());
    ESP_ERROR_CHECK(esp_wifi_set_bandwidth(WIFI_IF_STA, WIFI_BW_HT20));   /* HT20: 56 tones, design.md §3 */
#else
    esp_netif_create_default_wifi_ap();
    strncpy((char *)wc.ap.ssid, CONFIG_RFEDGE_WIFI_SSID, sizeof wc.ap.ssid - 1);
    wc.ap.ssid_len = (uint8_t)strlen(CONFIG_RFEDGE_WIFI_SSID);
    strncpy((char *)wc.ap.password, CONFIG_RFEDGE_WIFI_PASSWORD, sizeof wc.ap.password - 1);
    wc.ap.channel = CONFIG_RFEDGE_WIFI_CHANNEL;
    wc.ap.max_connection = 1;
    wc.ap.authmode = strlen(CONFIG_RFEDGE_WIFI_PASSWORD) >= 8 ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_AP));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_AP, &wc));
    ESP_ERROR_CHECK(esp_wifi_start());
    ESP_ERROR_CHECK(esp_wifi_set_bandwidth(WIFI_IF_AP, WIFI_BW_HT20));
#endif
    ESP_ERROR_CHECK(esp_wifi_set_ps(WIFI_PS_NONE));     /* no power save: steady packet timing */
    csi_start();
}

/* ---- main task ---------------------------------------------------------------------------------- */

void app_main(void)
{
    static uint8_t rx[512];
    static csi_item_t it;
    const uart_config_t uc = {
        .baud_rate = CONFIG_RFEDGE_UART_BAUD,
        .data_bits = UART_DATA_8_BITS,
        .parity = UART_PARITY_DISABLE,
        .stop_bits = UART_STOP_BITS_1,
        .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
        .source_clk = UART_SCLK_DEFAULT,
    };
    ESP_ERROR_CHECK(uart_driver_install(RFE_UART, 4096, 4096, 0, NULL, 0));
    ESP_ERROR_CHECK(uart_param_config(RFE_UART, &uc));
    csi_queue = xQueueCreateStatic(CSI_QUEUE_LEN, sizeof(csi_item_t), csi_queue_storage, &csi_queue_struct);
    rfe_device_init();
    wifi_start();
    for (;;) {
        const int n = uart_read_bytes(RFE_UART, rx, sizeof rx, pdMS_TO_TICKS(2));
        if (n > 0) rfe_device_feed(rx, (size_t)n);
        while (xQueueReceive(csi_queue, &it, 0) == pdTRUE) {
            it.pkt.buf = it.buf;
            rfe_device_csi_packet(&it.pkt);
        }
        if (rfe_device_stopped()) rfe_device_init();   /* BYE ends a session, not the board */
    }
}
