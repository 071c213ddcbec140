/*
 * libevent's own evconnlistener: the design threadlisten ports, in C.
 * evconnlistener_new() on the already-listening socket (backlog 0: leave it
 * as it is), the callback closes the connection at once.  Built with
 * -levent; needs libevent-dev (apt-get install libevent-dev).
 * Protocol: benchserver.h.
 */
#include "benchserver.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg) {
    (void)lev; (void)socklen; (void)arg;
    if (bs_stamps) bs_stamp((const struct sockaddr_in *)sa); else bs_tick();
    evutil_closesocket(fd);
}

int main(int argc, char **argv) {
    bs_options o = bs_parse(argc, argv);
    int lfd = bs_listen(&o);
    char info[160];
    struct event_base *base;
    struct evconnlistener *lev;

    snprintf(info, sizeof info, "{\"impl\": \"evconnlistener\", \"libevent\": \"%s\"}",
             event_get_version());
    bs_handshake(lfd, &o, info);
    base = event_base_new();
    if (!base) { fprintf(stderr, "event_base_new failed\n"); return 1; }
    /* As evconnlistener_new_bind does; evconnlistener_new leaves the mode
     * to the caller, and its accept loop runs until accept fails. */
    evutil_make_socket_nonblocking(lfd);
    lev = evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, 0, lfd);
    if (!lev) { fprintf(stderr, "evconnlistener_new failed\n"); return 1; }
    event_base_dispatch(base);
    return 0;
}
