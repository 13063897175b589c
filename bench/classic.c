/*
 * classic: the yardstick peers of scripts/bench.py, in the classic design.
 *
 * One UDP socket, one select() loop (pselect, for a race-free SIGTERM). Every INTERVAL (2 s by default) it
 * sends a heartbeat to each peer that has not acknowledged one yet; it
 * acknowledges every heartbeat it receives. It prints READY on stdout when
 * it has received a heartbeat from, and been acknowledged by, every other
 * peer, then keeps answering until the timeout or SIGTERM.
 *
 * --reply-first (the "floor"): in addition, on the FIRST heartbeat from a
 * peer that has not acknowledged us yet, send our own heartbeat to it at
 * once, so a late starter is answered within a round trip instead of
 * waiting for the next tick.
 *
 * It reads rollcall's hosts file format (HOST[:PORT] per line, IPv4
 * literals or names resolved with getaddrinfo, '#' comments, blank lines
 * skipped) and logs to stderr in rollcall's words where the bench reads
 * them: "bound to", "exchanged with NAME (k/N)" (the last two of a peer
 * only, or all of them with -d) and "READY after ...: sent N datagrams".
 *
 * Wire format (it only talks to itself): 8 bytes, "RCB1", kind (1
 * heartbeat, 2 acknowledgement), 0, sender's index (big-endian 16 bits).
 *
 * usage: classic -h HOSTS -n ENTRY|INDEX [-i 2s] [-t 120s] [--reply-first] [-d]
 * exit:  0 READY (at the timeout), 124 timeout before READY, 143 SIGTERM,
 *        130 SIGINT, 1 runtime error, 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 7610
#define KIND_HB 1
#define KIND_ACK 2

struct peer {
	char *entry;
	struct sockaddr_in addr;
	int resolved;
	int got_hb; /* a heartbeat from it arrived */
	int acked;  /* it acknowledged one of ours */
};

static struct peer *peers;
static int npeers, self = -1, debug, reply_first;
static volatile sig_atomic_t stop_signal;
static double t_start;
static unsigned long sent_hb, sent_ack, received;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One line on stderr, written at once. */
static void logf_(const char *fmt, ...)
{
	char line[512], stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof line, "%s.%03ldZ classic ", stamp, ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	if (write(2, line, n) < 0)
		return;
}

static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fputs("classic: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* "500ms", "2s", "1m", "1h" or a bare number of seconds. */
static double duration(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		die(2, "not a duration: %s", s);
	if (!strcmp(end, "ms"))
		v /= 1000;
	else if (!strcmp(end, "m"))
		v *= 60;
	else if (!strcmp(end, "h"))
		v *= 3600;
	else if (*end && strcmp(end, "s"))
		die(2, "not a duration: %s", s);
	return v;
}

static char *trim(char *s)
{
	char *e;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = 0;
	return s;
}

static int resolve(struct peer *p)
{
	char host[256], port[16];
	const char *colon = strrchr(p->entry, ':');
	struct addrinfo hints = {0}, *res;
	size_t hl = colon ? (size_t)(colon - p->entry) : strlen(p->entry);
	if (hl >= sizeof host)
		return -1;
	memcpy(host, p->entry, hl);
	host[hl] = 0;
	snprintf(port, sizeof port, "%s", colon ? colon + 1 : "7610");
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &res))
		return -1;
	memcpy(&p->addr, res->ai_addr, sizeof p->addr);
	freeaddrinfo(res);
	p->resolved = 1;
	return 0;
}

static void read_hosts(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int cap = 0;
	if (!f)
		die(2, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		char *hash = strchr(line, '#'), *e;
		if (hash)
			*hash = 0;
		e = trim(line);
		if (!*e)
			continue;
		if (npeers == cap) {
			cap = cap ? cap * 2 : 64;
			peers = realloc(peers, cap * sizeof *peers);
			if (!peers)
				die(1, "out of memory");
		}
		memset(&peers[npeers], 0, sizeof *peers);
		peers[npeers].entry = strdup(e);
		npeers++;
	}
	fclose(f);
	if (npeers < 1)
		die(2, "%s: no peers", path);
	if (npeers > 65535)
		die(2, "%s: too many peers", path);
}

static int sock;

static void send_kind(int to, int kind)
{
	unsigned char m[8] = {'R', 'C', 'B', '1', (unsigned char)kind, 0,
			      (unsigned char)(self >> 8), (unsigned char)self};
	if (!peers[to].resolved && resolve(&peers[to]))
		return;
	if (sendto(sock, m, sizeof m, 0, (struct sockaddr *)&peers[to].addr,
		   sizeof peers[to].addr) == (ssize_t)sizeof m) {
		if (kind == KIND_HB)
			sent_hb++;
		else
			sent_ack++;
	} else if (debug) {
		logf_("send to %s: %s", peers[to].entry, strerror(errno));
	}
	if (debug)
		logf_("sent %s to %s", kind == KIND_HB ? "heartbeat" : "acknowledgement", peers[to].entry);
}

static int exchanged(void)
{
	int k = 1;
	for (int i = 0; i < npeers; i++)
		if (i != self && peers[i].got_hb && peers[i].acked)
			k++;
	return k;
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

int main(int argc, char **argv)
{
	const char *hosts = NULL, *name = NULL;
	double interval = 2, timeout = 120;
	int ready = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--reply-first"))
			reply_first = 1;
		else if (!strcmp(a, "-d") || !strcmp(a, "--debug"))
			debug = 1;
		else if ((!strcmp(a, "-h") || !strcmp(a, "--hosts")) && v)
			hosts = argv[++i];
		else if ((!strcmp(a, "-n") || !strcmp(a, "--name")) && v)
			name = argv[++i];
		else if ((!strcmp(a, "-i") || !strcmp(a, "--interval")) && v)
			interval = duration(argv[++i]);
		else if ((!strcmp(a, "-t") || !strcmp(a, "--timeout")) && v)
			timeout = duration(argv[++i]);
		else
			die(2, "usage: classic -h HOSTS -n ENTRY|INDEX [-i 2s] [-t 120s] [--reply-first] [-d]");
	}
	if (!hosts || !name)
		die(2, "usage: classic -h HOSTS -n ENTRY|INDEX [-i 2s] [-t 120s] [--reply-first] [-d]");
	if (interval < 0.001)
		die(2, "interval too small");
	read_hosts(hosts);
	for (int i = 0; i < npeers && self < 0; i++)
		if (!strcmp(peers[i].entry, name))
			self = i;
	if (self < 0 && strspn(name, "0123456789") == strlen(name)) {
		int k = atoi(name);
		if (k >= 1 && k <= npeers)
			self = k - 1;
	}
	if (self < 0)
		die(2, "%s: no entry %s (nor an index 1..%d)", hosts, name, npeers);

	/* The signals are blocked but inside pselect(): none is lost between
	 * the check of stop_signal and the wait. */
	struct sigaction sa = {0};
	sigset_t block, waitmask;
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	t_start = now();
	if (resolve(&peers[self]))
		die(2, "%s: does not resolve", peers[self].entry);
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		die(1, "socket: %s", strerror(errno));
	if (bind(sock, (struct sockaddr *)&peers[self].addr, sizeof peers[self].addr)) {
		/* Not one of this machine's addresses: every address, this port. */
		struct sockaddr_in any = peers[self].addr;
		any.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(sock, (struct sockaddr *)&any, sizeof any))
			die(1, "bind %s: %s", peers[self].entry, strerror(errno));
	}
	logf_("%s (peer %d of %d) bound to %s, interval %gs, timeout %gs%s", peers[self].entry,
	      self + 1, npeers, peers[self].entry, interval, timeout,
	      reply_first ? ", reply-first" : "");

	double deadline = t_start + timeout, next_tick = t_start;
	for (;;) {
		double t = now();
		if (stop_signal) {
			logf_("exiting (%d): signal %d", 128 + stop_signal, stop_signal);
			return 128 + stop_signal;
		}
		if (t >= deadline) {
			logf_("exiting (%d): timeout", ready ? 0 : 124);
			return ready ? 0 : 124;
		}
		if (t >= next_tick) {
			for (int i = 0; i < npeers; i++)
				if (i != self && !peers[i].acked)
					send_kind(i, KIND_HB);
			next_tick += interval;
			if (next_tick <= t)
				next_tick = t + interval;
		}
		if (!ready && exchanged() == npeers) {
			ready = 1;
			fputs("READY\n", stdout);
			fflush(stdout);
			logf_("READY after %.3fms: sent %lu datagrams (%lu heartbeats, %lu acknowledgements), received %lu",
			      (now() - t_start) * 1000, sent_hb + sent_ack, sent_hb, sent_ack, received);
		}
		double wake = next_tick < deadline ? next_tick : deadline;
		double wait = wake - now();
		if (wait < 0)
			wait = 0;
		struct timespec tv = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
		fd_set rd;
		FD_ZERO(&rd);
		FD_SET(sock, &rd);
		int r = pselect(sock + 1, &rd, NULL, NULL, &tv, &waitmask);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die(1, "select: %s", strerror(errno));
		}
		if (r == 0)
			continue;
		for (;;) {
			unsigned char m[64];
			ssize_t len = recv(sock, m, sizeof m, MSG_DONTWAIT);
			if (len < 0)
				break; /* EAGAIN, or an ICMP error from an earlier send */
			if (len != 8 || memcmp(m, "RCB1", 4))
				continue;
			int from = m[6] << 8 | m[7];
			if (from >= npeers || from == self)
				continue;
			received++;
			struct peer *p = &peers[from];
			int before = p->got_hb && p->acked;
			if (m[4] == KIND_HB) {
				if (debug)
					logf_("heartbeat from %s", p->entry);
				send_kind(from, KIND_ACK);
				if (!p->got_hb) {
					p->got_hb = 1;
					if (reply_first && !p->acked)
						send_kind(from, KIND_HB);
				}
			} else if (m[4] == KIND_ACK) {
				if (debug)
					logf_("acknowledgement from %s", p->entry);
				p->acked = 1;
			}
			if (!before && p->got_hb && p->acked) {
				int k = exchanged();
				if (debug || k >= npeers - 1)
					logf_("exchanged with %s (%d/%d)", p->entry, k, npeers);
			}
		}
	}
}
