/*
 * The machine's limit for one thread: epoll + accept4 until EAGAIN, close at
 * once.  Level-triggered, one listening socket, no batch bound; what every
 * Python server here is compared against.  Protocol: benchserver.h.
 */
#include "benchserver.h"

#include <sys/epoll.h>
#include <sys/ioctl.h>

int main(int argc, char **argv) {
    bs_options o = bs_parse(argc, argv);
    int lfd = bs_listen(&o);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int nonblocking = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    struct epoll_event out[8];
    struct sockaddr_in peer;

    bs_handshake(lfd, &o, "{\"impl\": \"epoll + accept4\"}");
    /* Non-blocking listening socket: accept4 reports EAGAIN when drained. */
    if (ioctl(lfd, FIONBIO, &nonblocking)) { perror("FIONBIO"); return 1; }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev)) { perror("epoll_ctl"); return 1; }
    for (;;) {
        int n = epoll_wait(ep, out, 8, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (;;) {
            socklen_t len = sizeof peer;
            int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                if (errno == EINTR || errno == ECONNABORTED) continue;
                perror("accept4");
                return 1;
            }
            if (bs_stamps) bs_stamp(&peer); else bs_tick();
            close(fd);
        }
    }
}
