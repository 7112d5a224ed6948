/* Subscribe to streetloc's localization/pose with libzmq and msgpack-c, written from docs/wire_format.md.
 *
 *   cc -O2 -o pose_subscriber pose_subscriber.c $(pkg-config --cflags --libs libzmq msgpack)
 *   ./pose_subscriber [ENDPOINT] [COUNT]
 *
 * ENDPOINT ("" or absent: the default): ipc://IPC_DIR/localization.pose.sock, IPC_DIR = $STREETLOC_IPC_DIR, else
 * $XDG_RUNTIME_DIR/streetloc, else /tmp/streetloc-<uid>; tcp://127.0.0.1:47106 on a tcp bus.
 * COUNT: poses to print before exiting (default 0: forever). One line per pose:
 *   stamp_ns seq incarnation lat_deg lon_deg heading_deg status
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define TOPIC "localization/pose"
#define SCHEMA_VERSION 2

/* the value of key `name` in a msgpack map, NULL when absent or not a map */
static const msgpack_object *field(const msgpack_object *map, const char *name) {
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name)
            && memcmp(k->via.str.ptr, name, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static double real(const msgpack_object *o) {  /* reals are float64; accept ints too */
    if (o == NULL) return 0.0 / 0.0;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32) return o->via.f64;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return (double)o->via.i64;
    return 0.0 / 0.0;
}

static uint64_t integer(const msgpack_object *o) {
    return o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

int main(int argc, char **argv) {
    char endpoint[4096];
    if (argc > 1 && argv[1][0] != 0) {  /* "" also means the default */

        snprintf(endpoint, sizeof endpoint, "%s", argv[1]);
    } else if (getenv("STREETLOC_IPC_DIR")) {
        snprintf(endpoint, sizeof endpoint, "ipc://%s/localization.pose.sock", getenv("STREETLOC_IPC_DIR"));
    } else if (getenv("XDG_RUNTIME_DIR")) {
        snprintf(endpoint, sizeof endpoint, "ipc://%s/streetloc/localization.pose.sock", getenv("XDG_RUNTIME_DIR"));
    } else {
        snprintf(endpoint, sizeof endpoint, "ipc:///tmp/streetloc-%u/localization.pose.sock", (unsigned)getuid());
    }
    long count = argc > 2 ? atol(argv[2]) : 0;

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, "pose_subscriber: cannot connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, TOPIC, strlen(TOPIC));  /* a prefix: check frame 0 exactly */
    fprintf(stderr, "pose_subscriber: listening on %s\n", endpoint);

    for (long printed = 0; count == 0 || printed < count;) {
        zmq_msg_t frames[10];  /* a message has 2..10 frames; a pose has 2 */
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t scratch, *frame = n < 10 ? &frames[n] : &scratch;
            zmq_msg_init(frame);
            if (zmq_msg_recv(frame, sub, 0) < 0) { fprintf(stderr, "pose_subscriber: recv failed\n"); return 1; }
            more = zmq_msg_more(frame);
            if (n < 10) n++; else zmq_msg_close(&scratch);
        }
        int ok = n >= 2 && zmq_msg_size(&frames[0]) == strlen(TOPIC)
                 && memcmp(zmq_msg_data(&frames[0]), TOPIC, strlen(TOPIC)) == 0;
        msgpack_unpacked env;
        msgpack_unpacked_init(&env);
        /* frame 1: [schema_version, type_name, body] */
        if (ok && msgpack_unpack_next(&env, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), NULL)
                      == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *e = &env.data;
            ok = e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 3
                 && integer(&e->via.array.ptr[0]) == SCHEMA_VERSION
                 && e->via.array.ptr[1].type == MSGPACK_OBJECT_STR && e->via.array.ptr[1].via.str.size == 4
                 && memcmp(e->via.array.ptr[1].via.str.ptr, "Pose", 4) == 0;
            if (ok) {
                const msgpack_object *pose = &e->via.array.ptr[2], *header = field(pose, "header");
                const msgpack_object *status = field(pose, "status");
                printf("%llu %llu %llu %.9f %.9f %.3f %.*s\n",
                       (unsigned long long)integer(field(header, "stamp_ns")),
                       (unsigned long long)integer(field(header, "seq")),
                       (unsigned long long)integer(field(header, "incarnation")),  /* 0: unknown */
                       real(field(pose, "lat_deg")), real(field(pose, "lon_deg")), real(field(pose, "heading_deg")),
                       status && status->type == MSGPACK_OBJECT_STR ? (int)status->via.str.size : 1,
                       status && status->type == MSGPACK_OBJECT_STR ? status->via.str.ptr : "?");
                fflush(stdout);
                printed++;
            }
        } else {
            ok = 0;
        }
        if (!ok) fprintf(stderr, "pose_subscriber: skipped a message that is not a schema-2 Pose\n");
        msgpack_unpacked_destroy(&env);
        for (int i = 0; i < n; i++) zmq_msg_close(&frames[i]);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
