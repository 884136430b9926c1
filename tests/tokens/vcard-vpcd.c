/*
 * vcard-vpcd: a software CAC card (libcacard, keys in an NSS database)
 * put into vsmartcard's vpcd reader driver, so that pcscd and OpenSC's
 * opensc-pkcs11.so see a real card stack. Test use only.
 *
 *   vcard-vpcd PORT NSSDB NICKNAME...
 *
 * Connects to vpcd on 127.0.0.1:PORT (retrying while pcscd starts) and
 * serves it until the connection ends or SIGTERM. vpcd's framing: a
 * 2-byte big-endian length, then the payload; a 1-byte payload is a
 * control code (0 power off, 1 power on, 2 reset, 4 get ATR), anything
 * longer is a command APDU answered with the response APDU.
 *
 * The ATR is read once at start: libcacard's power-on also resets the
 * card (logging NSS out), and pcscd asks for the ATR every 0.4 s.
 * Debian's vpcd writes length and payload in two send() calls without
 * TCP_NODELAY: TCP_QUICKACK before every read keeps Nagle on its side
 * from holding each payload back for our delayed ACK (40 ms per APDU).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <libcacard.h>

#define READER "p11b virtual reader"

static int read_full(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    int one = 1;

    while (got < len) {
        ssize_t n;

        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
        n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int send_msg(int fd, const unsigned char *data, size_t len)
{
    unsigned char out[2 + 65536];
    size_t off = 0;

    if (len > 65535)
        return -1;
    out[0] = (unsigned char)(len >> 8);
    out[1] = (unsigned char)len;
    memcpy(out + 2, data, len);
    len += 2;
    while (off < len) {
        ssize_t n = send(fd, out + off, len - off, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static int connect_vpcd(int port)
{
    struct sockaddr_in sa;
    int i, one = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < 200; i++) { /* 20 s */
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            return fd;
        }
        close(fd);
        usleep(100 * 1000);
    }
    return -1;
}

int main(int argc, char **argv)
{
    unsigned char atr[64], msg[65536], resp[65536];
    char opts[4096];
    int atr_len = sizeof(atr), fd, i, port;
    size_t used;
    VReader *reader;

    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT NSSDB NICKNAME...\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    used = (size_t)snprintf(opts, sizeof(opts),
                            "db=\"sql:%s\" use_hw=no soft=(," READER ",CAC,",
                            argv[2]);
    for (i = 3; i < argc && used < sizeof(opts); i++)
        used += (size_t)snprintf(opts + used, sizeof(opts) - used, ",%s",
                                 argv[i]);
    if (used + 2 >= sizeof(opts))
        return 2;
    strcat(opts, ")");
    if (vcard_emul_init(vcard_emul_options(opts)) != VCARD_EMUL_OK) {
        fprintf(stderr, "vcard-vpcd: vcard_emul_init(%s) failed\n", opts);
        return 1;
    }
    reader = vreader_get_reader_by_name(READER);
    if (reader == NULL ||
        vreader_power_on(reader, atr, &atr_len) != VREADER_OK) {
        fprintf(stderr, "vcard-vpcd: no card in reader '%s'\n", READER);
        return 1;
    }
    fd = connect_vpcd(port);
    if (fd < 0) {
        fprintf(stderr, "vcard-vpcd: cannot reach vpcd on port %d\n", port);
        return 1;
    }
    fprintf(stderr, "vcard-vpcd: serving on port %d\n", port);
    for (;;) {
        unsigned char hdr[2];
        size_t len;
        int rlen;

        if (read_full(fd, hdr, 2) < 0)
            break;
        len = ((size_t)hdr[0] << 8) | hdr[1];
        if (len == 0 || read_full(fd, msg, len) < 0)
            break;
        if (len == 1) {
            switch (msg[0]) {
            case 0:
                vreader_power_off(reader);
                break;
            case 1:
            case 2: {
                unsigned char tmp[64];
                int tl = sizeof(tmp);

                vreader_power_on(reader, tmp, &tl);
                break;
            }
            case 4:
                if (send_msg(fd, atr, (size_t)atr_len) < 0)
                    goto out;
                break;
            default:
                break;
            }
            continue;
        }
        rlen = sizeof(resp);
        if (vreader_xfr_bytes(reader, msg, (int)len, resp, &rlen) !=
                VREADER_OK) {
            resp[0] = 0x6f; /* no precise diagnosis */
            resp[1] = 0x00;
            rlen = 2;
        }
        if (send_msg(fd, resp, (size_t)rlen) < 0)
            break;
    }
out:
    close(fd);
    return 0;
}
