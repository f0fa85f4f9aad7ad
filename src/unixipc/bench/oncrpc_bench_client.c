/* The Sun RPC benchmark's C client (stubs from `rpcgen -N -l`): times NULL calls or
 * 64-byte echoes to the benchmark's server on 127.0.0.1 and prints one JSON line in
 * the format of baseline.c (its own CPU time only; the harness adds the server's).
 *
 * usage: oncrpc_bench_client tcp|udp null|echo PORT SIZE SECONDS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include "oncrpc_bench.h"

/* xdr_void is declared without parameters: cast through void (*)(void) (GCC's way). */
#define XDR_VOID ((xdrproc_t)(void (*)(void))xdr_void)

static uint64_t now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s tcp|udp null|echo PORT SIZE SECONDS\n", argv[0]);
        return 2;
    }
    int udp = strcmp(argv[1], "udp") == 0, null = strcmp(argv[2], "null") == 0;
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)atoi(argv[3]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    u_int size = (u_int)atoi(argv[4]);
    double seconds = atof(argv[5]);
    int sock = RPC_ANYSOCK;
    struct timeval retry = {1, 0}, timeout = {25, 0};
    CLIENT *client = udp ? clntudp_create(&address, BENCH_PROG, BENCH_V1, retry, &sock)
                         : clnttcp_create(&address, BENCH_PROG, BENCH_V1, &sock, 0, 0);
    if (client == NULL) {
        clnt_pcreateerror("oncrpc_bench_client");
        return 1;
    }
    blob_t payload = {size, calloc(1, size ? size : 1)};
    size_t capacity = 1 << 20, count = 0;
    uint64_t *samples = malloc(capacity * sizeof *samples);
    uint64_t round_trips = 0, cpu_start = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t warm_until = now_ns(CLOCK_MONOTONIC) + (uint64_t)(seconds * 0.1 * 1e9), end = 0;
    for (;;) {
        uint64_t before = now_ns(CLOCK_MONOTONIC);
        if (null) {
            if (clnt_call(client, NULLPROC, XDR_VOID, NULL, XDR_VOID, NULL, timeout) != RPC_SUCCESS) {
                clnt_perror(client, "NULL");
                return 1;
            }
        } else {
            blob_t *back = echo_1(payload, client);
            if (back == NULL || back->blob_t_len != size) {
                clnt_perror(client, "ECHO");
                return 1;
            }
            xdr_free((xdrproc_t)xdr_blob_t, (char *)back);
        }
        uint64_t after = now_ns(CLOCK_MONOTONIC);
        round_trips++;
        if (end == 0) {
            if (after >= warm_until)
                end = after + (uint64_t)(seconds * 1e9);
            continue;
        }
        if (count < capacity)
            samples[count++] = after - before;
        if (after >= end)
            break;
    }
    double cpu = (double)(now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_start) / 1e9;
    qsort(samples, count, sizeof *samples, compare);
    size_t p99 = count * 99 / 100 < count ? count * 99 / 100 : count - 1;
    printf("{\"rtt_median_us\": %.4f, \"rtt_p99_us\": %.4f, \"round_trips\": %llu, "
           "\"messages\": %llu, \"client_cpu_seconds\": %.6f}\n",
           samples[count / 2] / 1e3, samples[p99] / 1e3, (unsigned long long)count,
           (unsigned long long)(2 * round_trips), cpu);
    clnt_destroy(client);
    return 0;
}
