// Subscribe to streetloc's localization/pose from Node.js with `zeromq` (v6) and `@msgpack/msgpack`,
// written from docs/wire_format.md.
//
//   npm ci && node pose_subscriber.mjs [ENDPOINT] [COUNT]
//
// ENDPOINT: default ipc://IPC_DIR/localization.pose.sock, IPC_DIR = $STREETLOC_IPC_DIR, else
// $XDG_RUNTIME_DIR/streetloc, else /tmp/streetloc-<uid>; tcp://127.0.0.1:47106 on a tcp bus.
// COUNT: poses to print before exiting (default 0: forever). One line per pose:
//   stamp_ns seq incarnation lat_deg lon_deg heading_deg status
import { Decoder } from "@msgpack/msgpack";
import { Subscriber } from "zeromq";
import { getuid } from "node:process";

const TOPIC = "localization/pose";
const SCHEMA_VERSION = 2;

function defaultEndpoint() {
  const env = process.env;
  const dir = env.STREETLOC_IPC_DIR
    || (env.XDG_RUNTIME_DIR ? `${env.XDG_RUNTIME_DIR}/streetloc` : `/tmp/streetloc-${getuid()}`);
  return `ipc://${dir}/${TOPIC.replaceAll("/", ".")}.sock`;
}

const endpoint = process.argv[2] || defaultEndpoint();
const count = Number(process.argv[3] || 0);
// stamp_ns needs 64 bits: decode integers as BigInt where a double would lose digits
const decoder = new Decoder({ useBigInt64: true });

const sub = new Subscriber();
sub.connect(endpoint);
sub.subscribe(TOPIC); // a prefix: frame 0 is checked exactly below
console.error(`pose_subscriber: listening on ${endpoint}`);

let printed = 0;
for await (const [topic, envelope] of sub) {
  let version, typeName, pose;
  try {
    [version, typeName, pose] = decoder.decode(envelope); // frame 1: [schema_version, type_name, body]
  } catch (err) {
    console.error(`pose_subscriber: skipped an undecodable message: ${err.message}`);
    continue;
  }
  if (topic.toString() !== TOPIC || Number(version) !== SCHEMA_VERSION || typeName !== "Pose") {
    console.error("pose_subscriber: skipped a message that is not a schema-2 Pose");
    continue;
  }
  const h = pose.header; // incarnation 0: unknown; a new one with seq from 0 is a restart, not a gap
  console.log([h.stamp_ns, h.seq, h.incarnation, Number(pose.lat_deg).toFixed(9), Number(pose.lon_deg).toFixed(9),
    Number(pose.heading_deg).toFixed(3), pose.status].join(" "));
  if (count > 0 && ++printed >= count) break;
}
sub.close();
