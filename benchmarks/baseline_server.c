/* A baseline for scripts/run_benchmarks.py, measured in the same run as
   msglog: a server with the original C server's I/O design (one thread, one
   write(2) to the log and one send(2) of the ack per message), written here
   for the comparison; it is not the original's code. Unlike the original it
   uses epoll and reads every complete frame of a read, so it is a stronger
   baseline than the original was. It speaks just enough of the protocol for
   msglog bench (NAME, PASS, MSG, CLOSE) and checks nothing else.

   gcc -O2 -o baseline_server benchmarks/baseline_server.c
   ./baseline_server PORT LOG        (PORT 0 picks a free one) */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
struct conn { unsigned char buf[65536 + 3]; size_t len; unsigned char name[256]; size_t name_len; };
static struct conn *conns[MAXFD];

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: baseline PORT LOG\n"); return 2; }
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) { nofile.rlim_cur = nofile.rlim_max; setrlimit(RLIMIT_NOFILE, &nofile); }
    int log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(0x7f000001) };
    if (log < 0 || bind(lfd, (void *)&a, sizeof a) || listen(lfd, 4096)) { perror("baseline"); return 1; }
    socklen_t al = sizeof a; getsockname(lfd, (void *)&a, &al);
    printf("baseline listening on 127.0.0.1:%d, log %s\n", ntohs(a.sin_port), argv[2]); fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept(lfd, 0, 0);
                if (c < 0 || c >= MAXFD) { if (c >= 0) close(c); continue; }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conns[c] = calloc(1, sizeof(struct conn));
                ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                continue;
            }
            struct conn *k = conns[fd];
            ssize_t r = recv(fd, k->buf + k->len, sizeof k->buf - k->len, 0);
            if (r <= 0) { close(fd); free(k); conns[fd] = 0; continue; }
            k->len += r;
            size_t off = 0; int closing = 0;
            while (!closing) {
                unsigned char *f = k->buf + off; size_t have = k->len - off;
                if (have >= 1 && f[0] == 4) { send(fd, "\0", 1, 0); closing = 1; break; }
                if (have < 3) break;
                size_t plen = f[1] | f[2] << 8;
                if (have < 3 + plen) break;
                if (f[0] == 1) { k->name_len = plen < 256 ? plen : 255; memcpy(k->name, f + 3, k->name_len); }
                if (f[0] == 3) {
                    char rec[65536 + 300]; size_t m = 0;
                    rec[m++] = '['; memcpy(rec + m, k->name, k->name_len); m += k->name_len;
                    memcpy(rec + m, "]: ", 3); m += 3; memcpy(rec + m, f + 3, plen); m += plen;
                    rec[m++] = '\r'; rec[m++] = '\n';
                    write(log, rec, m);
                }
                send(fd, "\0", 1, 0);
                off += 3 + plen;
            }
            memmove(k->buf, k->buf + off, k->len - off); k->len -= off;
            if (closing) { close(fd); free(k); conns[fd] = 0; }
        }
    }
}
