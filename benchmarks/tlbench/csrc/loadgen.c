/*
 * The load generator: connects to 127.0.0.1 as fast as the server accepts.
 *
 *   loadgen steady  PORT THREADS INFLIGHT SECONDS
 *   loadgen latency PORT RATE COUNT OUTFILE
 *
 * steady: THREADS threads each keep INFLIGHT non-blocking connects in flight
 * (a closed loop).  A connection is finished when the server closes it (the
 * client sees EOF); the client then closes with SO_LINGER 0, which sends a
 * RST and leaves no TIME_WAIT behind, so a long run never runs out of ports,
 * and opens the next one.  Because the number in flight is bounded, the
 * server's accept queue never overflows (an overflow drops SYNs, and the 1 s
 * SYN retransmission would then measure TCP, not the server).  Stops after
 * SECONDS; prints "DONE <finished> <errors> <elapsed_ns> <cpu_ns>".
 *
 * latency: one thread issues COUNT connects at a fixed RATE per second (an
 * open loop paced by a timerfd), noting CLOCK_MONOTONIC just before each
 * connect() with the local port it got; writes <port:int64, ns:int64> pairs
 * to OUTFILE.  The server notes the same clock when its callback starts, so
 * pairing by port gives the connect-to-callback latency.  Stops when every
 * connection has finished or 10 s after the last connect; prints
 * "DONE <issued> <finished> <errors>".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* Wait at most this long per epoll_wait, so a thread notices "stop" soon. */
#define POLL_MS 20
/* After the last connect of a latency run, wait this long for stragglers. */
#define DRAIN_S 10

static struct sockaddr_in target;
static atomic_int stop_flag;
static atomic_ulong finished, errors;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Start one non-blocking connect and watch it for the server's close.
 * Returns the socket, or -1 (counted as an error). */
static int open_one(int ep, uint64_t *sent_ns) {
    struct linger lin = {1, 0};
    struct epoll_event ev;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        atomic_fetch_add(&errors, 1);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    if (sent_ns) *sent_ns = now_ns();
    if (connect(fd, (struct sockaddr *)&target, sizeof target) && errno != EINPROGRESS) {
        atomic_fetch_add(&errors, 1);
        close(fd);
        return -1;
    }
    /* EPOLLIN/EPOLLRDHUP: the server closed (EOF); EPOLLERR/HUP: refused or reset. */
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
        atomic_fetch_add(&errors, 1);
        close(fd);
        return -1;
    }
    return fd;
}

/* The socket is done: count it and close it with a RST (SO_LINGER 0). */
static void finish_one(int fd, uint32_t events) {
    int err = 0;
    socklen_t len = sizeof err;
    if (events & EPOLLERR) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) atomic_fetch_add(&errors, 1);
    else atomic_fetch_add(&finished, 1);
    close(fd);
}

static int inflight_per_thread;

static void *steady_thread(void *unused) {
    struct epoll_event out[64];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    (void)unused;
    for (int i = 0; i < inflight_per_thread; i++) open_one(ep, NULL);
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        int n = epoll_wait(ep, out, 64, POLL_MS);
        for (int i = 0; i < n; i++) {
            finish_one(out[i].data.fd, out[i].events);
            if (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) open_one(ep, NULL);
        }
    }
    /* Sockets still in flight are closed (with a RST) when the process exits. */
    return NULL;
}

static int run_steady(int threads, double seconds) {
    pthread_t tids[256];
    struct timespec pause;
    uint64_t start = now_ns(), cpu0 = cpu_ns();
    if (threads < 1 || threads > 256) return 2;
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, steady_thread, NULL);
    pause.tv_sec = (time_t)seconds;
    pause.tv_nsec = (long)((seconds - (double)pause.tv_sec) * 1e9);
    while (nanosleep(&pause, &pause) && errno == EINTR) {}
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("DONE %lu %lu %llu %llu\n", atomic_load(&finished), atomic_load(&errors),
           (unsigned long long)(now_ns() - start), (unsigned long long)(cpu_ns() - cpu0));
    return 0;
}

static int local_port(int fd) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len)) return -1;
    return ntohs(sa.sin_port);
}

static int run_latency(double rate, unsigned long count, const char *outfile) {
    int64_t *stamps = calloc(2 * count, sizeof(int64_t));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    uint64_t period = (uint64_t)(1e9 / rate), start, give_up = 0;
    unsigned long issued = 0, open_now = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = tfd}, out[64];
    struct itimerspec its;
    FILE *f;
    if (!stamps || ep < 0 || tfd < 0 || period == 0) return 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    start = now_ns() + 10000000ull; /* first connect 10 ms from now */
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(start / 1000000000ull);
    its.it_value.tv_nsec = (long)(start % 1000000000ull);
    its.it_interval.tv_nsec = (long)(period % 1000000000ull);
    its.it_interval.tv_sec = (time_t)(period / 1000000000ull);
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    while (issued < count || open_now > 0) {
        int n = epoll_wait(ep, out, 64, POLL_MS);
        if (issued == count && now_ns() > give_up) break;
        for (int i = 0; i < n; i++) {
            if (out[i].data.fd == tfd) {
                uint64_t ticks = 0;
                if (read(tfd, &ticks, sizeof ticks) != sizeof ticks) continue;
                /* One connect per elapsed period; a late wake-up catches up. */
                for (; ticks > 0 && issued < count; ticks--) {
                    uint64_t sent;
                    int fd = open_one(ep, &sent);
                    if (fd >= 0) {
                        stamps[2 * issued] = local_port(fd);
                        stamps[2 * issued + 1] = (int64_t)sent;
                        open_now++;
                    } else {
                        stamps[2 * issued] = -1;
                    }
                    issued++;
                }
                if (issued == count) {
                    its.it_interval.tv_sec = its.it_interval.tv_nsec = 0;
                    its.it_value.tv_sec = its.it_value.tv_nsec = 0;
                    timerfd_settime(tfd, 0, &its, NULL);
                    give_up = now_ns() + DRAIN_S * 1000000000ull;
                }
            } else {
                finish_one(out[i].data.fd, out[i].events);
                open_now--;
            }
        }
    }
    f = fopen(outfile, "wb");
    if (!f) { perror(outfile); return 1; }
    fwrite(stamps, sizeof(int64_t), 2 * issued, f);
    fclose(f);
    printf("DONE %lu %lu %lu\n", issued, atomic_load(&finished), atomic_load(&errors));
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen steady PORT THREADS INFLIGHT SECONDS\n"
            "       loadgen latency PORT RATE COUNT OUTFILE\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(argv[2]));
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Bounded: never outlive a run by much, whatever happens to the caller. */
    alarm(600);
    if (!strcmp(argv[1], "steady") && argc == 6) {
        inflight_per_thread = atoi(argv[4]);
        return run_steady(atoi(argv[3]), atof(argv[5]));
    }
    if (!strcmp(argv[1], "latency") && argc == 6)
        return run_latency(atof(argv[3]), strtoul(argv[4], NULL, 10), argv[5]);
    usage();
    return 2;
}
