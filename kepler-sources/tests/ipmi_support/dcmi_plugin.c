/*
 * DCMI Get Power Reading for OpenIPMI's ipmi_sim, which has no DCMI of its own.
 *
 * Loaded by `loadlib "dcmi_plugin.so" "state=/path/to/file"` in the simulator's lan.conf. It
 * answers NetFn 0x2C (group extension) with group 0xDC through
 * ipmi_emu_register_group_extension_handler. Each request re-reads the state file, so a
 * test changes the reading by rewriting it:
 *   "<watts> <active 0|1>"  a reading (current = average = watts, min/max = junk)
 *   "nodcmi"                every DCMI command answers 0xC1 (invalid command)
 * The file is read whole on each request; a missing or malformed file answers 0xFF.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>

#include <OpenIPMI/serv.h>
#include <OpenIPMI/mcserv.h>

static char state_path[512];

static void put16(unsigned char *p, unsigned int v)
{
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

static void handle_dcmi(lmc_data_t *mc, msg_t *msg, unsigned char *rdata,
                        unsigned int *rdata_len, void *cb_data)
{
    char buf[128];
    unsigned int watts = 0, active = 0;
    FILE *f;
    size_t n;

    (void) mc;
    (void) cb_data;
    f = fopen(state_path, "r");
    if (!f) {
        rdata[0] = 0xff;
        *rdata_len = 1;
        return;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    if (strncmp(buf, "nodcmi", 6) == 0 || msg->cmd != 0x02) {
        rdata[0] = 0xc1;
        *rdata_len = 1;
        return;
    }
    if (msg->len < 4 || msg->data[1] != 0x01) {
        rdata[0] = 0xcc;
        *rdata_len = 1;
        return;
    }
    if (sscanf(buf, "%u %u", &watts, &active) != 2 || watts > 0xffff) {
        rdata[0] = 0xff;
        *rdata_len = 1;
        return;
    }
    rdata[0] = 0x00;
    rdata[1] = 0xdc;
    put16(rdata + 2, watts);           /* current */
    put16(rdata + 4, 0xffff);          /* minimum: junk, as some BMCs report */
    put16(rdata + 6, 0);               /* maximum: junk */
    put16(rdata + 8, watts);           /* average */
    put32(rdata + 10, (uint32_t) time(NULL));
    put32(rdata + 14, 1000);           /* averaging period, ms */
    rdata[18] = active ? 0x40 : 0x00;  /* bit 6: power measurement active */
    *rdata_len = 19;
}

int ipmi_sim_module_init(sys_data_t *sys, const char *initstr)
{
    const char *p = initstr ? strstr(initstr, "state=") : NULL;

    (void) sys;
    if (!p) {
        fprintf(stderr, "dcmi_plugin: options must hold state=<path>\n");
        return 22; /* EINVAL */
    }
    snprintf(state_path, sizeof(state_path), "%s", p + 6);
    state_path[strcspn(state_path, " \t\n")] = '\0';
    ipmi_emu_register_group_extension_handler(0xdc, handle_dcmi, NULL);
    return 0;
}
