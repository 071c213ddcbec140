/*
 * The control protocol of a benchmark server, for the C servers
 * (epoll_server.c, libevent_server.c).  The Python servers speak the same
 * protocol through tlbench/servers/proto.py; see that module for the
 * description of each line.  In short:
 *
 *   argv:   --port P --backlog B [--reuseport] [--stamp CAPACITY]
 *   stdout: READY <port> <info-json>
 *   stdin:  GO <target>          (target 0: count for ever; "auto": the
 *                                  connections queued on the socket now)
 *   stdout: DONE <count> <first_ns> <last_ns>     once <target> were accepted
 *   stdin:  COUNT  -> COUNT <count> <now_ns> <cpu_ns>
 *           TIMES  -> TIMES <count> <first_ns> <last_ns>
 *           STAMPS <path> -> OK   (writes <port:int64, ns:int64> pairs)
 *           EXIT, or end of input -> the process exits
 *
 * Times are CLOCK_MONOTONIC nanoseconds, the clock of Python's
 * time.monotonic_ns() and of the load generator, so the three agree.
 * The process also ends by itself after LIFETIME_S seconds (alarm()), so no
 * run can leave a server behind.
 */
#ifndef BENCHSERVER_H
#define BENCHSERVER_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Longest a server may live, in seconds: far above any measurement. */
#define LIFETIME_S 600

static atomic_ulong bs_count;
static atomic_ulong bs_target;        /* 0: no target (steady, latency) */
static atomic_ullong bs_first_ns, bs_last_ns;
static int64_t *bs_stamps;            /* port, ns pairs; NULL unless --stamp */
static unsigned long bs_capacity;
static pthread_mutex_t bs_out_lock = PTHREAD_MUTEX_INITIALIZER;

static inline uint64_t bs_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t bs_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bs_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void bs_say(const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&bs_out_lock);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    pthread_mutex_unlock(&bs_out_lock);
}

/* Called once per accepted connection, by the loop thread only. */
static inline void bs_tick(void) {
    unsigned long n = atomic_load_explicit(&bs_count, memory_order_relaxed) + 1;
    atomic_store_explicit(&bs_count, n, memory_order_relaxed);
    if (n == 1)
        atomic_store_explicit(&bs_first_ns, bs_now_ns(), memory_order_relaxed);
    unsigned long target = atomic_load_explicit(&bs_target, memory_order_relaxed);
    if (n == target) {
        uint64_t last = bs_now_ns();
        atomic_store_explicit(&bs_last_ns, last, memory_order_relaxed);
        bs_say("DONE %lu %llu %llu\n", n,
               (unsigned long long)atomic_load(&bs_first_ns), (unsigned long long)last);
    }
}

/* Latency mode: the time first, then the peer's port that pairs it with the
 * load generator's own record. */
static inline void bs_stamp(const struct sockaddr_in *peer) {
    uint64_t t = bs_now_ns();
    unsigned long n = atomic_load_explicit(&bs_count, memory_order_relaxed);
    if (n < bs_capacity) {
        bs_stamps[2 * n] = ntohs(peer->sin_port);
        bs_stamps[2 * n + 1] = (int64_t)t;
    }
    atomic_store_explicit(&bs_count, n + 1, memory_order_relaxed);
}

typedef struct {
    int port;
    int backlog;
    int reuseport;
    unsigned long stamp_capacity;
} bs_options;

static void bs_usage(const char *argv0) {
    fprintf(stderr, "usage: %s --port P --backlog B [--reuseport] [--stamp N]\n", argv0);
    exit(2);
}

static bs_options bs_parse(int argc, char **argv) {
    bs_options o = {0, 128, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            o.port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backlog") && i + 1 < argc)
            o.backlog = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reuseport"))
            o.reuseport = 1;
        else if (!strcmp(argv[i], "--stamp") && i + 1 < argc)
            o.stamp_capacity = strtoul(argv[++i], NULL, 10);
        else
            bs_usage(argv[0]);
    }
    return o;
}

/* A listening TCP socket on 127.0.0.1, left blocking (each server sets the
 * mode it wants).  Exits on failure. */
static int bs_listen(const bs_options *o) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa;
    if (fd < 0) { perror("socket"); exit(1); }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
        perror("SO_REUSEPORT");
        exit(1);
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("bind"); exit(1); }
    if (listen(fd, o->backlog)) { perror("listen"); exit(1); }
    return fd;
}

static int bs_port_of(int fd) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    return ntohs(sa.sin_port);
}

/* The number of connections waiting in a listening socket's accept queue
 * (Linux reports it as tcpi_unacked for a socket in LISTEN). */
static unsigned long bs_queued(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len)) return 0;
    return ti.tcpi_unacked;
}

static void bs_write_stamps(const char *path) {
    FILE *f = fopen(path, "wb");
    unsigned long n = atomic_load(&bs_count);
    if (n > bs_capacity) n = bs_capacity;
    if (f) {
        fwrite(bs_stamps, sizeof(int64_t), 2 * n, f);
        fclose(f);
    }
    bs_say(f ? "OK\n" : "ERROR cannot write stamps\n");
}

static void *bs_command_thread(void *unused) {
    char line[4200];
    (void)unused;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "COUNT")) {
            unsigned long n = atomic_load(&bs_count);
            uint64_t now = bs_now_ns(), cpu = bs_cpu_ns();
            bs_say("COUNT %lu %llu %llu\n", n, (unsigned long long)now, (unsigned long long)cpu);
        } else if (!strcmp(line, "TIMES")) {
            bs_say("TIMES %lu %llu %llu\n", atomic_load(&bs_count),
                   (unsigned long long)atomic_load(&bs_first_ns),
                   (unsigned long long)atomic_load(&bs_last_ns));
        } else if (!strncmp(line, "STAMPS ", 7)) {
            bs_write_stamps(line + 7);
        } else if (!strcmp(line, "EXIT")) {
            break;
        } else {
            bs_say("ERROR unknown command\n");
        }
    }
    fflush(stdout);
    _exit(0);
    return NULL;
}

/* READY, wait for GO, then start the command thread.  Returns when the
 * server should start accepting. */
static void bs_handshake(int fd, const bs_options *o, const char *info_json) {
    char line[256];
    pthread_t thread;
    alarm(LIFETIME_S);
    if (o->stamp_capacity) {
        bs_capacity = o->stamp_capacity;
        bs_stamps = calloc(2 * bs_capacity, sizeof(int64_t));
        if (!bs_stamps) { perror("calloc"); exit(1); }
    }
    bs_say("READY %d %s\n", bs_port_of(fd), info_json);
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "GO ", 3)) {
        fprintf(stderr, "expected GO\n");
        exit(2);
    }
    if (!strncmp(line + 3, "auto", 4))
        atomic_store(&bs_target, bs_queued(fd));
    else
        atomic_store(&bs_target, strtoul(line + 3, NULL, 10));
    if (pthread_create(&thread, NULL, bs_command_thread, NULL)) {
        perror("pthread_create");
        exit(1);
    }
    pthread_detach(thread);
}

#endif
