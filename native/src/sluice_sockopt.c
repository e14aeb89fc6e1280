/*
 * sluice_sockopt: the few Linux socket options Node cannot set itself.
 *   getOriginalDestination(fd, family)                       SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST
 *   createTransparentListener(ip, port, family, backlog)     -> fd (IP_TRANSPARENT/IPV6_TRANSPARENT, SO_REUSEADDR)
 *   connectTransparent(srcIp, srcPort, dstIp, dstPort, fam)  -> fd, non-blocking connect in progress
 *   socketError(fd)                                          -> 0 | "ECONNREFUSED" ...
 *   waitConnected(fd, timeoutMs, cb)                         poll(POLLOUT) on the libuv pool, cb(0 | errno name)
 *   closeFd(fd)
 *   keepCapabilities(on)                                     prctl(PR_SET_KEEPCAPS) for the calling (main) thread
 *   retainNetAdmin()                                         after setuid: CAP_NET_ADMIN+CAP_NET_RAW only, effective
 *   scanData(buffer, start)                                  the DATA framer's fast path (src/data_scan.c)
 * Errors are thrown as JS Errors whose `code` is the errno name.
 * Plain C against node_api.h only (no node-addon-api).
 */
#include <node_api.h>

#include <stdbool.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>                 /* TCP_QUICKACK */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/netfilter_ipv4.h>        /* SO_ORIGINAL_DST */
#include <linux/netfilter_ipv6/ip6_tables.h> /* IP6T_SO_ORIGINAL_DST */

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

static const char *errno_name(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "EUNKNOWN";
}

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, errno_name(e), msg);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG", msg);
  return NULL;
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return -1;
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int get_str(napi_env env, napi_value v, char *buf, size_t cap) {
  napi_valuetype t;
  size_t len = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return -1;
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) return -1;
  return len + 1 < cap ? 0 : -1;
}

/* Fills a sockaddr for family 4 or 6; an IPv4 address given to family 6 is mapped. Returns length or 0. */
static socklen_t make_addr(const char *ip, int port, int family, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (port < 0 || port > 65535) return 0;
  if (family == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) return 0;
    return sizeof *a;
  }
  if (family == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, ip, &a->sin6_addr) == 1) return sizeof *a;
    struct in_addr v4;
    if (inet_pton(AF_INET, ip, &v4) != 1) return 0;
    a->sin6_addr.s6_addr[10] = 0xff;
    a->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a->sin6_addr.s6_addr[12], &v4, 4);
    return sizeof *a;
  }
  return 0;
}

static int set_transparent(int fd, int family) {
  int one = 1;
  if (family == 4) return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
  return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
}

static napi_value make_endpoint(napi_env env, const char *ip, int port) {
  napi_value obj, vip, vport;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, ip, NAPI_AUTO_LENGTH, &vip);
  napi_create_int32(env, port, &vport);
  napi_set_named_property(env, obj, "ip", vip);
  napi_set_named_property(env, obj, "port", vport);
  return obj;
}

static napi_value get_original_destination(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, family;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || get_int(env, argv[0], &fd) || get_int(env, argv[1], &family) || (family != 4 && family != 6))
    return throw_type(env, "getOriginalDestination(fd, 4|6)");
  char text[INET6_ADDRSTRLEN];
  if (family == 4) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &a, &len) != 0) return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
    if (!inet_ntop(AF_INET, &a.sin_addr, text, sizeof text)) return throw_errno(env, "inet_ntop", errno);
    return make_endpoint(env, text, ntohs(a.sin_port));
  }
  struct sockaddr_in6 a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &a, &len) != 0)
    return throw_errno(env, "getsockopt(IP6T_SO_ORIGINAL_DST)", errno);
  if (!inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text)) return throw_errno(env, "inet_ntop", errno);
  return make_endpoint(env, text, ntohs(a.sin6_port));
}

static napi_value create_transparent_listener(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char ip[INET6_ADDRSTRLEN + 1];
  int32_t port, family, backlog;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || get_str(env, argv[0], ip, sizeof ip) || get_int(env, argv[1], &port) || get_int(env, argv[2], &family) ||
      get_int(env, argv[3], &backlog) || (family != 4 && family != 6) || backlog < 1)
    return throw_type(env, "createTransparentListener(ip, port, 4|6, backlog)");
  struct sockaddr_storage ss;
  socklen_t alen = make_addr(ip, port, family, &ss);
  if (!alen) return throw_type(env, "createTransparentListener: bad address or port");
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail_reuse;
  if (set_transparent(fd, family) != 0) goto fail_transparent;
  if (bind(fd, (struct sockaddr *)&ss, alen) != 0) goto fail_bind;
  if (listen(fd, backlog) != 0) goto fail_listen;
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
  int e;
fail_reuse:
  e = errno; close(fd); return throw_errno(env, "setsockopt(SO_REUSEADDR)", e);
fail_transparent:
  e = errno; close(fd); return throw_errno(env, "setsockopt(IP_TRANSPARENT) (needs CAP_NET_ADMIN)", e);
fail_bind:
  e = errno; close(fd); return throw_errno(env, "bind", e);
fail_listen:
  e = errno; close(fd); return throw_errno(env, "listen", e);
}

static napi_value connect_transparent(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char src[INET6_ADDRSTRLEN + 1], dst[INET6_ADDRSTRLEN + 1];
  int32_t sport, dport, family;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5 || get_str(env, argv[0], src, sizeof src) || get_int(env, argv[1], &sport) ||
      get_str(env, argv[2], dst, sizeof dst) || get_int(env, argv[3], &dport) || get_int(env, argv[4], &family) ||
      (family != 4 && family != 6))
    return throw_type(env, "connectTransparent(srcIp, srcPort, dstIp, dstPort, 4|6)");
  struct sockaddr_storage sa, da;
  socklen_t slen = make_addr(src, sport, family, &sa);
  socklen_t dlen = make_addr(dst, dport, family, &da);
  if (!slen || !dlen) return throw_type(env, "connectTransparent: bad address or port");
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1, e;
  if (set_transparent(fd, family) != 0) {
    e = errno; close(fd); return throw_errno(env, "setsockopt(IP_TRANSPARENT) (needs CAP_NET_ADMIN)", e);
  }
  if (sport != 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    e = errno; close(fd); return throw_errno(env, "setsockopt(SO_REUSEADDR)", e);
  }
  if (bind(fd, (struct sockaddr *)&sa, slen) != 0) {
    e = errno; close(fd); return throw_errno(env, "bind", e);
  }
  if (connect(fd, (struct sockaddr *)&da, dlen) != 0 && errno != EINPROGRESS) {
    e = errno; close(fd); return throw_errno(env, "connect", e);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value so_error_value(napi_env env, int e) {
  napi_value out;
  if (e == 0) napi_create_int32(env, 0, &out);
  else napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &out);
  return out;
}

static int read_so_error(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

static napi_value socket_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_int(env, argv[0], &fd)) return throw_type(env, "socketError(fd)");
  return so_error_value(env, read_so_error(fd));
}

typedef struct {
  int fd;
  int timeout_ms;
  int result;
  napi_async_work work;
  napi_ref callback;
} wait_job;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_execute(napi_env env, void *data) {
  (void)env;
  wait_job *job = data;
  long long deadline = now_ms() + job->timeout_ms;
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) { job->result = ETIMEDOUT; return; }
    struct pollfd p = { .fd = job->fd, .events = POLLOUT, .revents = 0 };
    int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (r < 0) {
      if (errno == EINTR) continue;
      job->result = errno;
      return;
    }
    if (r == 0) continue;
    if (p.revents & POLLNVAL) { job->result = EBADF; return; }
    job->result = read_so_error(job->fd);
    if (job->result == 0 && (p.revents & (POLLERR | POLLHUP))) job->result = ECONNRESET;
    return;
  }
}

static void wait_complete(napi_env env, napi_status status, void *data) {
  wait_job *job = data;
  napi_value cb, global, arg;
  napi_get_reference_value(env, job->callback, &cb);
  napi_get_global(env, &global);
  arg = so_error_value(env, status == napi_ok ? job->result : ECANCELED);
  napi_call_function(env, global, cb, 1, &arg, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value wait_connected(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, timeout;
  napi_valuetype t;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || get_int(env, argv[0], &fd) || get_int(env, argv[1], &timeout) || timeout < 0 ||
      napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function)
    return throw_type(env, "waitConnected(fd, timeoutMs, callback)");
  wait_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, "calloc", ENOMEM);
  job->fd = fd;
  job->timeout_ms = timeout;
  napi_value name;
  napi_create_string_utf8(env, "sluice.waitConnected", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[2], 1, &job->callback);
  if (napi_create_async_work(env, NULL, name, wait_execute, wait_complete, job, &job->work) != napi_ok) {
    napi_delete_reference(env, job->callback);
    free(job);
    napi_throw_error(env, "EFAULT", "napi_create_async_work failed");
    return NULL;
  }
  napi_queue_async_work(env, job->work);
  return NULL;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_int(env, argv[0], &fd) || fd < 0) return throw_type(env, "closeFd(fd)");
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, "close", errno);
  return NULL;
}

/*
 * setsockopt(TCP_QUICKACK, 1): leaves delayed-ACK (interactive) mode and sends an ACK that is pending now, so a
 * peer whose next small write waits on Nagle for our ACK can send it at once. Linux re-enters delayed-ACK mode by
 * itself, so callers use it after each read they do not answer. Returns 0 or an errno name; never throws on a
 * socket error (the socket may be closing).
 */
static napi_value quick_ack(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_int(env, argv[0], &fd) || fd < 0) return throw_type(env, "quickAck(fd)");
  int one = 1;
  return so_error_value(env, setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one) == 0 ? 0 : errno);
}

/*
 * setsockopt(TCP_DEFER_ACCEPT, seconds) on a listening socket: a connection is handed to accept() only once its
 * first data has arrived (for up to `seconds`), so a protocol whose client speaks first costs the server one
 * wake-up for the connection and its first packet instead of two. Returns 0 or an errno name.
 */
static napi_value defer_accept(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, seconds;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || get_int(env, argv[0], &fd) || fd < 0 || get_int(env, argv[1], &seconds) || seconds < 0) return throw_type(env, "deferAccept(fd, seconds)");
  return so_error_value(env, setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) == 0 ? 0 : errno);
}

static napi_value keep_capabilities(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_bool(env, argv[0], &on) != napi_ok) return throw_type(env, "keepCapabilities(boolean)");
  if (prctl(PR_SET_KEEPCAPS, on ? 1 : 0, 0, 0, 0) != 0) return throw_errno(env, "prctl(PR_SET_KEEPCAPS)", errno);
  return NULL;
}

/* Reduces the calling thread's capabilities to CAP_NET_ADMIN and CAP_NET_RAW (permitted and effective), which is
 * what IP_TRANSPARENT needs. Call after setuid() with keepCapabilities(true) set before it. */
static napi_value retain_net_admin(napi_env env, napi_callback_info info) {
  (void)info;
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  uint32_t bits = (1u << CAP_NET_ADMIN) | (1u << CAP_NET_RAW);
  data[0].permitted = bits;
  data[0].effective = bits;
  if (syscall(SYS_capset, &hdr, data) != 0) return throw_errno(env, "capset(CAP_NET_ADMIN)", errno);
  return NULL;
}

/* data_scan.c: the DATA framer's fast path. */
napi_value sluice_scan_data(napi_env env, napi_callback_info info);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "getOriginalDestination", NULL, get_original_destination, NULL, NULL, NULL, napi_enumerable, NULL },
    { "createTransparentListener", NULL, create_transparent_listener, NULL, NULL, NULL, napi_enumerable, NULL },
    { "connectTransparent", NULL, connect_transparent, NULL, NULL, NULL, napi_enumerable, NULL },
    { "socketError", NULL, socket_error, NULL, NULL, NULL, napi_enumerable, NULL },
    { "waitConnected", NULL, wait_connected, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "quickAck", NULL, quick_ack, NULL, NULL, NULL, napi_enumerable, NULL },
    { "deferAccept", NULL, defer_accept, NULL, NULL, NULL, napi_enumerable, NULL },
    { "keepCapabilities", NULL, keep_capabilities, NULL, NULL, NULL, napi_enumerable, NULL },
    { "retainNetAdmin", NULL, retain_net_admin, NULL, NULL, NULL, napi_enumerable, NULL },
    { "scanData", NULL, sluice_scan_data, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
