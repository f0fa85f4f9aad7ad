/* The Sun RPC benchmark's C server (dispatch from `rpcgen -N -m`): serves TCP and UDP
 * on ports the kernel chooses, prints them ("TCP UDP\n"), and is not registered with
 * rpcbind (svc_register with protocol 0), so no portmapper is needed. */
#include <stdio.h>
#include <stdlib.h>
#include "oncrpc_bench.h"

void bench_prog_1(struct svc_req *request, SVCXPRT *transport);

blob_t *echo_1_svc(blob_t data, struct svc_req *request)
{
    static blob_t copy;
    (void)request;
    copy = data; /* encoded before the arguments are freed */
    return &copy;
}

int main(void)
{
    SVCXPRT *tcp = svctcp_create(RPC_ANYSOCK, 0, 0);
    SVCXPRT *udp = svcudp_create(RPC_ANYSOCK);
    if (tcp == NULL || udp == NULL) {
        fprintf(stderr, "oncrpc_bench_server: cannot create the services\n");
        return 1;
    }
    if (!svc_register(tcp, BENCH_PROG, BENCH_V1, bench_prog_1, 0)
        || !svc_register(udp, BENCH_PROG, BENCH_V1, bench_prog_1, 0)) {
        fprintf(stderr, "oncrpc_bench_server: cannot register the program\n");
        return 1;
    }
    printf("%u %u\n", (unsigned)tcp->xp_port, (unsigned)udp->xp_port);
    fflush(stdout);
    svc_run();
    return 1;
}
