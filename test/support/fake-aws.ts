/**
 * Fake AWS origins for tests: real HTTP(S) servers on 127.0.0.1, port 0, that real SDKs (boto3,
 * the AWS CLI, the AWS SDK for JavaScript) can talk to. In-memory state, real response shapes,
 * no signature checks. Written independently of src/aws so that tests using both prove something.
 */
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { crc32 } from "node:zlib";
import { Request, type Response } from "../../src/core/flow.js";
import { Headers } from "../../src/core/headers.js";

/** One request as the fake origin saw it (body still framed as sent, e.g. aws-chunked). */
export interface FakeAwsRequest {
  method: string;
  /** Origin-form path with query, e.g. "/bucket/key?uploads". */
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Header names and values as sent, in order (Node's `rawHeaders`). */
  rawHeaders: string[];
  body: Buffer;
}

export interface FakeAwsOrigin {
  url: string;
  port: number;
  requests: FakeAwsRequest[];
  close(): Promise<void>;
}

export interface FakeOriginOptions {
  /** Serve HTTPS with this key and certificate. */
  tls?: { key: string; cert: string };
}

/** The request a fake origin saw, as a sluice `Request` (what the proxy would have built). */
export function sluiceRequestOf(seen: FakeAwsRequest, origin: Pick<FakeAwsOrigin, "url" | "port">): Request {
  return new Request({
    method: seen.method,
    scheme: origin.url.startsWith("https:") ? "https" : "http",
    host: "127.0.0.1",
    port: origin.port,
    path: seen.path,
    authority: typeof seen.headers.host === "string" ? seen.headers.host : "",
    headers: new Headers(seen.rawHeaders.slice()),
    content: seen.body,
  });
}

type FakeHandler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void;

async function startFakeOrigin(handler: FakeHandler, opts: FakeOriginOptions): Promise<FakeAwsOrigin> {
  const requests: FakeAwsRequest[] = [];
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? "", path: req.url ?? "/", headers: req.headers, rawHeaders: req.rawHeaders, body });
      try {
        handler(req, body, res);
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`fake AWS origin failed: ${(e as Error).stack}`);
      }
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest) : http.createServer(onRequest);
  // SDKs send `Expect: 100-continue` on uploads; answer it like S3 does, then take the body.
  server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeContinue();
    onRequest(req, res);
  });
  const sockets = new Set<net.Socket>();
  server.on(opts.tls ? "secureConnection" : "connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * An origin answering every request with `respond(request)`: for tests that need AWS-shaped
 * answers a real service would give (throttling, failures) at will.
 */
export async function startScriptedOrigin(respond: (request: Request) => Response, opts: FakeOriginOptions & { answerAfterMs?: (request: Request) => number } = {}): Promise<FakeAwsOrigin & { inFlight: { now: number; most: number } }> {
  const scheme = opts.tls ? "https" : "http";
  let port = 0;
  // Requests being answered right now, and the most at once (a Lambda's concurrent executions).
  const inFlight = { now: 0, most: 0 };
  const origin = await startFakeOrigin((req, body, res) => {
    const request = sluiceRequestOf({ method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, rawHeaders: req.rawHeaders, body }, { url: `${scheme}://127.0.0.1`, port });
    const response = respond(request);
    inFlight.most = Math.max(inFlight.most, ++inFlight.now);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      inFlight.now--;
    };
    res.once("finish", end);
    res.once("close", end);
    const answer = () => {
      res.writeHead(response.statusCode, response.reason, response.headers.raw);
      res.end(response.content ?? undefined);
    };
    // A slow answer (a Lambda function that runs for a while) keeps its request in flight.
    const after = opts.answerAfterMs?.(request) ?? 0;
    if (after > 0) setTimeout(answer, after);
    else answer();
  }, opts);
  port = origin.port;
  return { ...origin, inFlight };
}

// ---------------------------------------------------------------------------------------------
// S3

interface S3Object {
  data: Buffer;
  etag: string;
  lastModified: Date;
  contentType: string;
  metadata: [string, string][];
}

interface S3Bucket {
  created: Date;
  region: string;
  objects: Map<string, S3Object>;
}

interface S3Upload {
  bucket: string;
  key: string;
  contentType: string;
  metadata: [string, string][];
  parts: Map<number, { data: Buffer; etag: string; lastModified: Date }>;
}

export interface FakeS3 extends FakeAwsOrigin {
  /** A stored object's bytes, for assertions. */
  object(bucket: string, key: string): Buffer | undefined;
  bucketNames(): string[];
}

export interface FakeS3Options extends FakeOriginOptions {
  /** Buckets that exist from the start. */
  buckets?: string[];
  /** Region reported for buckets created without a LocationConstraint. */
  region?: string;
}

const S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/";
const OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a";
const XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n';
const KEY_ELEMENT = /<Key>([\s\S]*?)<\/Key>/g;
const PART_ELEMENT = /<Part>([\s\S]*?)<\/Part>/g;
const PART_NUMBER_ELEMENT = /<PartNumber>\s*(\d+)\s*<\/PartNumber>/;
const ETAG_ELEMENT = /<ETag>([\s\S]*?)<\/ETag>/;
const LOCATION_CONSTRAINT = /<LocationConstraint>([\s\S]*?)<\/LocationConstraint>/;
const QUIET_TRUE = /<Quiet>\s*true\s*<\/Quiet>/i;
const RANGE = /^bytes=(\d*)-(\d*)$/;
const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;

/**
 * A fake S3: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, PutObject
 * (plain, `Expect: 100-continue`, aws-chunked with signed or unsigned chunks and checksum
 * trailers), CopyObject, GetObject (with Range), HeadObject, DeleteObject, ListObjects(V2),
 * DeleteObjects and multipart uploads. Path-style and virtual-hosted (bucket.localhost,
 * bucket.s3.<region>.amazonaws.com in the Host header) addressing.
 */
export async function startFakeS3(opts: FakeS3Options = {}): Promise<FakeS3> {
  const defaultRegion = opts.region ?? "us-east-1";
  const buckets = new Map<string, S3Bucket>();
  for (const name of opts.buckets ?? []) buckets.set(name, { created: new Date(), region: defaultRegion, objects: new Map() });
  const uploads = new Map<string, S3Upload>();

  const handler: FakeHandler = (req, wireBody, res) => {
    const method = req.method ?? "GET";
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q < 0 ? "" : rawUrl.slice(q + 1));
    const reply = new S3Reply(res, method);
    const { bucket: bucketName, key } = s3AddressOf(req.headers.host ?? "", pathname);

    let body: Buffer;
    let trailers: Record<string, string> = {};
    try {
      ({ body, trailers } = payloadOf(req.headers, wireBody));
    } catch (e) {
      return reply.error(400, "IncompleteBody", (e as Error).message);
    }
    const integrityError = checkIntegrity(req.headers, trailers, body);
    if (integrityError) return reply.error(400, integrityError[0], integrityError[1]);

    if (!bucketName) {
      if (method === "GET") return reply.xml(200, listBucketsXml(buckets));
      return reply.error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    }
    const bucket = buckets.get(bucketName);
    if (!key) {
      if (method === "PUT" && !hasSubresource(query)) {
        if (bucket) return reply.error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.", { BucketName: bucketName });
        const region = LOCATION_CONSTRAINT.exec(body.toString("utf8"))?.[1]?.trim() || defaultRegion;
        buckets.set(bucketName, { created: new Date(), region, objects: new Map() });
        return reply.empty(200, { Location: `/${bucketName}` });
      }
      if (!bucket) return reply.error(404, "NoSuchBucket", "The specified bucket does not exist", { BucketName: bucketName });
      if (method === "HEAD") return reply.empty(200, { "x-amz-bucket-region": bucket.region, "x-amz-access-point-alias": "false" });
      if (method === "DELETE" && !hasSubresource(query)) {
        if (bucket.objects.size > 0) return reply.error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", { BucketName: bucketName });
        buckets.delete(bucketName);
        return reply.empty(204);
      }
      if (method === "GET" && query.has("location")) {
        const constraint = bucket.region === "us-east-1" ? "" : bucket.region;
        return reply.xml(200, `${XML_DECL}<LocationConstraint xmlns="${S3_NS}">${constraint}</LocationConstraint>`);
      }
      if (method === "GET" && query.has("uploads")) return reply.xml(200, listUploadsXml(bucketName, uploads));
      if (method === "GET" && !hasSubresource(query)) return reply.xml(200, listObjectsXml(bucketName, bucket, query));
      if (method === "POST" && query.has("delete")) return reply.xml(200, deleteObjectsXml(bucket, body.toString("utf8")));
      return notImplemented(reply);
    }

    if (!bucket) return reply.error(404, "NoSuchBucket", "The specified bucket does not exist", { BucketName: bucketName });
    const uploadId = query.get("uploadId");
    switch (method) {
      case "PUT": {
        if (uploadId !== null) {
          const upload = uploads.get(uploadId);
          if (!upload) return reply.error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", { UploadId: uploadId });
          const partNumber = Number(query.get("partNumber"));
          if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) return reply.error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
          const etag = md5Hex(body);
          upload.parts.set(partNumber, { data: body, etag, lastModified: new Date() });
          return reply.empty(200, { ETag: `"${etag}"`, "x-amz-server-side-encryption": "AES256", ...checksumEcho(req.headers, trailers) });
        }
        if (hasSubresource(query)) return notImplemented(reply);
        const copySource = req.headers["x-amz-copy-source"];
        if (typeof copySource === "string") {
          const source = copySourceObject(buckets, copySource);
          if (!source) return reply.error(404, "NoSuchKey", "The specified key does not exist.", { Key: copySource });
          const copied: S3Object = { ...source, lastModified: new Date() };
          if (req.headers["x-amz-metadata-directive"] === "REPLACE") {
            copied.metadata = metadataOf(req.headers);
            copied.contentType = req.headers["content-type"] ?? source.contentType;
          }
          bucket.objects.set(key, copied);
          return reply.xml(200, `${XML_DECL}<CopyObjectResult xmlns="${S3_NS}"><LastModified>${copied.lastModified.toISOString()}</LastModified><ETag>&quot;${copied.etag}&quot;</ETag></CopyObjectResult>`);
        }
        const etag = md5Hex(body);
        bucket.objects.set(key, { data: body, etag, lastModified: new Date(), contentType: req.headers["content-type"] ?? "binary/octet-stream", metadata: metadataOf(req.headers) });
        return reply.empty(200, { ETag: `"${etag}"`, "x-amz-server-side-encryption": "AES256", ...checksumEcho(req.headers, trailers) });
      }
      case "POST": {
        if (query.has("uploads")) {
          const id = randomBytes(48).toString("base64url");
          uploads.set(id, { bucket: bucketName, key, contentType: req.headers["content-type"] ?? "binary/octet-stream", metadata: metadataOf(req.headers), parts: new Map() });
          return reply.xml(200, `${XML_DECL}<InitiateMultipartUploadResult xmlns="${S3_NS}"><Bucket>${xmlEscape(bucketName)}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
        }
        if (uploadId !== null) return completeMultipartUpload(reply, buckets, uploads, uploadId, body.toString("utf8"), `http://${req.headers.host ?? "127.0.0.1"}`);
        return notImplemented(reply);
      }
      case "GET":
      case "HEAD": {
        if (uploadId !== null) {
          const upload = uploads.get(uploadId);
          if (!upload || method === "HEAD") return reply.error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", { UploadId: uploadId });
          return reply.xml(200, listPartsXml(upload, uploadId));
        }
        if (hasSubresource(query)) return notImplemented(reply);
        const object = bucket.objects.get(key);
        if (!object) return reply.error(404, "NoSuchKey", "The specified key does not exist.", { Key: key });
        return getObject(reply, object, req.headers.range);
      }
      case "DELETE": {
        if (uploadId !== null) {
          if (!uploads.delete(uploadId)) return reply.error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", { UploadId: uploadId });
          return reply.empty(204);
        }
        if (hasSubresource(query)) return notImplemented(reply);
        bucket.objects.delete(key);
        return reply.empty(204);
      }
    }
    return notImplemented(reply);
  };

  const origin = await startFakeOrigin(handler, opts);
  return {
    ...origin,
    object: (bucket, key) => buckets.get(bucket)?.objects.get(key)?.data,
    bucketNames: () => [...buckets.keys()].sort(),
  };
}

/** Writes S3 responses with S3's headers: request ids, Date, Server. */
class S3Reply {
  constructor(
    private readonly res: http.ServerResponse,
    private readonly method: string,
  ) {}

  private headers(extra: Record<string, string>): Record<string, string> {
    return { "x-amz-request-id": randomBytes(8).toString("hex").toUpperCase(), "x-amz-id-2": randomBytes(56).toString("base64"), Date: new Date().toUTCString(), Server: "AmazonS3", ...extra };
  }

  xml(status: number, body: string): void {
    const bytes = Buffer.from(body, "utf8");
    this.res.writeHead(status, this.headers({ "Content-Type": "application/xml", "Content-Length": String(bytes.length) }));
    this.res.end(bytes);
  }

  empty(status: number, extra: Record<string, string> = {}): void {
    this.res.writeHead(status, this.headers(status === 204 ? extra : { "Content-Length": "0", ...extra }));
    this.res.end();
  }

  /** HEAD errors carry no body, like S3's. */
  error(status: number, code: string, message: string, fields: Record<string, string> = {}): void {
    const requestId = randomBytes(8).toString("hex").toUpperCase();
    const hostId = randomBytes(56).toString("base64");
    let extra = "";
    for (const [name, value] of Object.entries(fields)) extra += `<${name}>${xmlEscape(value)}</${name}>`;
    const body = this.method === "HEAD" ? Buffer.alloc(0) : Buffer.from(`${XML_DECL}<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>${extra}<RequestId>${requestId}</RequestId><HostId>${hostId}</HostId></Error>`, "utf8");
    this.res.writeHead(status, { "x-amz-request-id": requestId, "x-amz-id-2": hostId, "Content-Type": "application/xml", Date: new Date().toUTCString(), Server: "AmazonS3", ...(this.method === "HEAD" ? {} : { "Content-Length": String(body.length) }) });
    this.res.end(body);
  }

  object(status: number, headers: Record<string, string>, body: Buffer): void {
    this.res.writeHead(status, this.headers(headers));
    this.res.end(this.method === "HEAD" ? undefined : body);
  }
}

function notImplemented(reply: S3Reply): void {
  reply.error(501, "NotImplemented", "A header you provided implies functionality that is not implemented");
}

/** Path-style unless the Host names a bucket (bucket.localhost, bucket.s3.eu-west-1.amazonaws.com). */
function s3AddressOf(hostHeader: string, pathname: string): { bucket: string | null; key: string | null } {
  const hostname = hostHeader.startsWith("[") ? "" : hostHeader.replace(/:\d+$/, "").toLowerCase();
  let hostBucket: string | null = null;
  if (hostname && hostname !== "localhost" && !IPV4.test(hostname)) {
    if (hostname.endsWith(".localhost")) hostBucket = hostname.slice(0, -".localhost".length);
    else {
      const labels = hostname.split(".");
      for (let i = labels.length - 1; i > 0; i--) {
        if (labels[i] === "s3" || labels[i]!.startsWith("s3-")) {
          hostBucket = labels.slice(0, i).join(".");
          break;
        }
      }
    }
  }
  if (hostBucket) return { bucket: hostBucket, key: pathname.length > 1 ? decodePath(pathname.slice(1)) : null };
  const slash = pathname.indexOf("/", 1);
  const bucket = decodePath(slash < 0 ? pathname.slice(1) : pathname.slice(1, slash));
  const key = slash < 0 || slash + 1 >= pathname.length ? null : decodePath(pathname.slice(slash + 1));
  return { bucket: bucket || null, key };
}

function decodePath(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Query parameters that address a sub-resource (as opposed to GetObject's response-* overrides etc.). */
const SUBRESOURCES = new Set(["acl", "policy", "cors", "lifecycle", "versioning", "tagging", "website", "logging", "notification", "replication", "encryption", "accelerate", "requestPayment", "object-lock", "ownershipControls", "publicAccessBlock", "versions", "analytics", "metrics", "inventory", "intelligent-tiering", "retention", "legal-hold", "attributes", "torrent", "restore", "select", "uploads", "delete", "location", "policyStatus"]);

function hasSubresource(query: URLSearchParams): boolean {
  for (const name of query.keys()) if (SUBRESOURCES.has(name)) return true;
  return false;
}

/**
 * The object bytes of a request body: as is, or decoded from aws-chunked framing
 * (`<hex-size>[;chunk-signature=…]\r\n<data>\r\n … 0\r\n<trailers>\r\n\r\n`).
 */
function payloadOf(headers: http.IncomingHttpHeaders, wire: Buffer): { body: Buffer; trailers: Record<string, string> } {
  const sha = headers["x-amz-content-sha256"];
  const chunked = (typeof sha === "string" && sha.startsWith("STREAMING-")) || (headers["content-encoding"] ?? "").includes("aws-chunked");
  if (!chunked) return { body: wire, trailers: {} };
  const chunks: Buffer[] = [];
  const trailers: Record<string, string> = {};
  let i = 0;
  for (;;) {
    const lineEnd = wire.indexOf("\r\n", i);
    if (lineEnd < 0) throw new Error("aws-chunked body ends inside a chunk header");
    const header = wire.toString("latin1", i, lineEnd);
    const semi = header.indexOf(";");
    const size = Number.parseInt(semi < 0 ? header : header.slice(0, semi), 16);
    if (!Number.isFinite(size)) throw new Error(`bad aws-chunked chunk header ${JSON.stringify(header)}`);
    i = lineEnd + 2;
    if (size === 0) break;
    if (i + size > wire.length) throw new Error("aws-chunked body shorter than its chunk sizes");
    chunks.push(wire.subarray(i, i + size));
    i += size + 2;
  }
  // Trailers: `name:value` lines up to an empty line (or the end of the body).
  while (i < wire.length) {
    const lineEnd = wire.indexOf("\r\n", i);
    const line = wire.toString("latin1", i, lineEnd < 0 ? wire.length : lineEnd);
    i = lineEnd < 0 ? wire.length : lineEnd + 2;
    if (line === "") break;
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = Buffer.concat(chunks);
  const declared = headers["x-amz-decoded-content-length"];
  if (typeof declared === "string" && Number(declared) !== body.length) {
    throw new Error(`You did not provide the number of bytes specified by the x-amz-decoded-content-length header: ${declared} declared, ${body.length} sent`);
  }
  return { body, trailers };
}

/** Content-MD5 and CRC32 checksums, in headers or trailers, checked like S3 does. */
function checkIntegrity(headers: http.IncomingHttpHeaders, trailers: Record<string, string>, body: Buffer): [code: string, message: string] | null {
  const md5 = headers["content-md5"];
  if (typeof md5 === "string" && md5 !== createHash("md5").update(body).digest("base64")) {
    return ["BadDigest", "The Content-MD5 you specified did not match what we received."];
  }
  const crc = trailers["x-amz-checksum-crc32"] ?? headers["x-amz-checksum-crc32"];
  if (typeof crc === "string" && crc !== crc32Base64(body)) {
    return ["BadDigest", "The CRC32 you specified did not match the calculated checksum."];
  }
  return null;
}

function crc32Base64(body: Buffer): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(body) >>> 0);
  return b.toString("base64");
}

/** S3 returns the checksum a client sent with an upload. */
function checksumEcho(headers: http.IncomingHttpHeaders, trailers: Record<string, string>): Record<string, string> {
  const crc = trailers["x-amz-checksum-crc32"] ?? headers["x-amz-checksum-crc32"];
  return typeof crc === "string" ? { "x-amz-checksum-crc32": crc } : {};
}

function metadataOf(headers: http.IncomingHttpHeaders): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) if (name.startsWith("x-amz-meta-") && typeof value === "string") out.push([name, value]);
  return out;
}

function copySourceObject(buckets: Map<string, S3Bucket>, header: string): S3Object | undefined {
  const withoutVersion = header.split("?")[0]!;
  const decoded = decodePath(withoutVersion.startsWith("/") ? withoutVersion.slice(1) : withoutVersion);
  const slash = decoded.indexOf("/");
  if (slash < 0) return undefined;
  return buckets.get(decoded.slice(0, slash))?.objects.get(decoded.slice(slash + 1));
}

function getObject(reply: S3Reply, object: S3Object, range: string | undefined): void {
  const common: Record<string, string> = {
    "Last-Modified": object.lastModified.toUTCString(),
    ETag: `"${object.etag}"`,
    "x-amz-server-side-encryption": "AES256",
    "Accept-Ranges": "bytes",
    "Content-Type": object.contentType,
  };
  for (const [name, value] of object.metadata) common[name] = value;
  const size = object.data.length;
  const m = range ? RANGE.exec(range.trim()) : null;
  if (m && (m[1] || m[2])) {
    let start: number;
    let end: number;
    if (!m[1]) {
      start = Math.max(0, size - Number(m[2]));
      end = size - 1;
    } else {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    }
    if (start >= size || start > end) return reply.error(416, "InvalidRange", "The requested range is not satisfiable", { RangeRequested: range!, ActualObjectSize: String(size) });
    const slice = object.data.subarray(start, end + 1);
    return reply.object(206, { ...common, "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": String(slice.length) }, slice);
  }
  reply.object(200, { ...common, "Content-Length": String(size) }, object.data);
}

function completeMultipartUpload(reply: S3Reply, buckets: Map<string, S3Bucket>, uploads: Map<string, S3Upload>, uploadId: string, xml: string, base: string): void {
  const upload = uploads.get(uploadId);
  if (!upload) return reply.error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", { UploadId: uploadId });
  const chosen: { data: Buffer; etag: string }[] = [];
  let previous = 0;
  for (const [, part] of xml.matchAll(PART_ELEMENT)) {
    const number = Number(PART_NUMBER_ELEMENT.exec(part!)?.[1]);
    const etag = xmlUnescape(ETAG_ELEMENT.exec(part!)?.[1] ?? "").trim().replaceAll('"', "");
    if (number <= previous) return reply.error(400, "InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.");
    previous = number;
    const stored = upload.parts.get(number);
    if (!stored || stored.etag !== etag) return reply.error(400, "InvalidPart", "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.", { UploadId: uploadId, PartNumber: String(number), ETag: etag });
    chosen.push(stored);
  }
  if (chosen.length === 0) return reply.error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema");
  const bucket = buckets.get(upload.bucket);
  if (!bucket) return reply.error(404, "NoSuchBucket", "The specified bucket does not exist", { BucketName: upload.bucket });
  const combined = createHash("md5");
  for (const p of chosen) combined.update(Buffer.from(p.etag, "hex"));
  const etag = `${combined.digest("hex")}-${chosen.length}`;
  bucket.objects.set(upload.key, { data: Buffer.concat(chosen.map((p) => p.data)), etag, lastModified: new Date(), contentType: upload.contentType, metadata: upload.metadata });
  uploads.delete(uploadId);
  const location = `${base}/${encodeURIComponent(upload.bucket)}/${upload.key.split("/").map(encodeURIComponent).join("/")}`;
  reply.xml(200, `${XML_DECL}<CompleteMultipartUploadResult xmlns="${S3_NS}"><Location>${xmlEscape(location)}</Location><Bucket>${xmlEscape(upload.bucket)}</Bucket><Key>${xmlEscape(upload.key)}</Key><ETag>&quot;${etag}&quot;</ETag></CompleteMultipartUploadResult>`);
}

function listBucketsXml(buckets: Map<string, S3Bucket>): string {
  let items = "";
  for (const name of [...buckets.keys()].sort()) items += `<Bucket><Name>${xmlEscape(name)}</Name><CreationDate>${buckets.get(name)!.created.toISOString()}</CreationDate></Bucket>`;
  return `${XML_DECL}<ListAllMyBucketsResult xmlns="${S3_NS}"><Owner><ID>${OWNER_ID}</ID><DisplayName>sluice</DisplayName></Owner><Buckets>${items}</Buckets></ListAllMyBucketsResult>`;
}

function listUploadsXml(bucketName: string, uploads: Map<string, S3Upload>): string {
  let items = "";
  for (const [id, u] of uploads) {
    if (u.bucket === bucketName) items += `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${id}</UploadId><StorageClass>STANDARD</StorageClass></Upload>`;
  }
  return `${XML_DECL}<ListMultipartUploadsResult xmlns="${S3_NS}"><Bucket>${xmlEscape(bucketName)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`;
}

function listPartsXml(upload: S3Upload, uploadId: string): string {
  let items = "";
  for (const number of [...upload.parts.keys()].sort((a, b) => a - b)) {
    const p = upload.parts.get(number)!;
    items += `<Part><PartNumber>${number}</PartNumber><LastModified>${p.lastModified.toISOString()}</LastModified><ETag>&quot;${p.etag}&quot;</ETag><Size>${p.data.length}</Size></Part>`;
  }
  return `${XML_DECL}<ListPartsResult xmlns="${S3_NS}"><Bucket>${xmlEscape(upload.bucket)}</Bucket><Key>${xmlEscape(upload.key)}</Key><UploadId>${uploadId}</UploadId><PartNumberMarker>0</PartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated>${items}<StorageClass>STANDARD</StorageClass></ListPartsResult>`;
}

/** ListObjects (marker) and ListObjectsV2 (continuation-token, start-after), with prefix, delimiter, max-keys and encoding-type=url. */
function listObjectsXml(bucketName: string, bucket: S3Bucket, query: URLSearchParams): string {
  const v2 = query.get("list-type") === "2";
  const prefix = query.get("prefix") ?? "";
  const delimiter = query.get("delimiter") ?? "";
  const maxKeys = Math.min(1000, Math.max(0, Number(query.get("max-keys") ?? "1000") || 0));
  const urlEncoded = query.get("encoding-type") === "url";
  const token = query.get("continuation-token");
  const after = v2 ? (token ? Buffer.from(token, "base64url").toString("utf8") : (query.get("start-after") ?? "")) : (query.get("marker") ?? "");
  const enc = (s: string) => xmlEscape(urlEncoded ? encodeURIComponent(s).replaceAll("%2F", "/") : s);

  let contents = "";
  let commonPrefixes = "";
  let count = 0;
  let last = "";
  let truncated = false;
  const seenPrefixes = new Set<string>();
  for (const key of [...bucket.objects.keys()].sort()) {
    if (!key.startsWith(prefix) || key <= after) continue;
    // Resuming after a common prefix skips everything under it.
    if (delimiter && after.endsWith(delimiter) && key.startsWith(after)) continue;
    const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
    const common = cut >= 0 ? key.slice(0, cut + delimiter.length) : null;
    if (common !== null && seenPrefixes.has(common)) continue;
    if (count === maxKeys) {
      truncated = true;
      break;
    }
    count++;
    if (common !== null) {
      seenPrefixes.add(common);
      commonPrefixes += `<CommonPrefixes><Prefix>${enc(common)}</Prefix></CommonPrefixes>`;
      last = common;
    } else {
      const o = bucket.objects.get(key)!;
      const owner = v2 ? "" : `<Owner><ID>${OWNER_ID}</ID><DisplayName>sluice</DisplayName></Owner>`;
      contents += `<Contents><Key>${enc(key)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>&quot;${o.etag}&quot;</ETag><Size>${o.data.length}</Size>${owner}<StorageClass>STANDARD</StorageClass></Contents>`;
      last = key;
    }
  }
  let head = `<Name>${xmlEscape(bucketName)}</Name><Prefix>${enc(prefix)}</Prefix>`;
  if (v2) {
    if (token) head += `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>`;
    if (truncated) head += `<NextContinuationToken>${Buffer.from(last, "utf8").toString("base64url")}</NextContinuationToken>`;
    head += `<KeyCount>${count}</KeyCount>`;
  } else {
    head += `<Marker>${enc(after)}</Marker>`;
    if (truncated && delimiter) head += `<NextMarker>${enc(last)}</NextMarker>`;
  }
  head += `<MaxKeys>${maxKeys}</MaxKeys>`;
  if (delimiter) head += `<Delimiter>${enc(delimiter)}</Delimiter>`;
  if (urlEncoded) head += `<EncodingType>url</EncodingType>`;
  head += `<IsTruncated>${truncated}</IsTruncated>`;
  if (v2 && query.has("start-after")) head += `<StartAfter>${enc(query.get("start-after")!)}</StartAfter>`;
  return `${XML_DECL}<ListBucketResult xmlns="${S3_NS}">${head}${contents}${commonPrefixes}</ListBucketResult>`;
}

function deleteObjectsXml(bucket: S3Bucket, xml: string): string {
  const quiet = QUIET_TRUE.test(xml);
  let deleted = "";
  for (const [, raw] of xml.matchAll(KEY_ELEMENT)) {
    const key = xmlUnescape(raw!);
    bucket.objects.delete(key);
    if (!quiet) deleted += `<Deleted><Key>${xmlEscape(key)}</Key></Deleted>`;
  }
  return `${XML_DECL}<DeleteResult xmlns="${S3_NS}">${deleted}</DeleteResult>`;
}

function md5Hex(data: Buffer): string {
  return createHash("md5").update(data).digest("hex");
}

const XML_SPECIAL = /[&<>"']/g;
const XML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
const XML_ENTITY = /&(amp|lt|gt|quot|apos|#(\d+)|#x([0-9a-fA-F]+));/g;
const XML_ENTITY_VALUES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function xmlEscape(s: string): string {
  return s.replace(XML_SPECIAL, (c) => XML_ESCAPES[c]!);
}

function xmlUnescape(s: string): string {
  return s.replace(XML_ENTITY, (_, name: string, dec?: string, hex?: string) =>
    dec ? String.fromCodePoint(Number(dec)) : hex ? String.fromCodePoint(Number.parseInt(hex, 16)) : XML_ENTITY_VALUES[name]!,
  );
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

type AttributeValue = Record<string, unknown>;
type Item = Record<string, AttributeValue>;

interface KeySchemaElement {
  AttributeName: string;
  KeyType: "HASH" | "RANGE";
}

interface DynamoTable {
  name: string;
  keySchema: KeySchemaElement[];
  attributeDefinitions: { AttributeName: string; AttributeType: string }[];
  billingMode: "PROVISIONED" | "PAY_PER_REQUEST";
  readCapacity: number;
  writeCapacity: number;
  created: number;
  id: string;
  items: Map<string, Item>;
}

export interface FakeDynamoDB extends FakeAwsOrigin {
  tableNames(): string[];
  item(table: string, key: Item): Item | undefined;
}

export interface FakeDynamoDBOptions extends FakeOriginOptions {
  /** Tables that exist from the start, each with a string hash key (and optional string range key). */
  tables?: { name: string; hashKey: string; rangeKey?: string }[];
  region?: string;
}

class DynamoError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly namespace = "com.amazonaws.dynamodb.v20120810",
  ) {
    super(message);
  }
}

/** A fake DynamoDB (JSON 1.0): CreateTable, DescribeTable, ListTables, PutItem, GetItem, Query (hash key equality), DeleteItem. */
export async function startFakeDynamoDB(opts: FakeDynamoDBOptions = {}): Promise<FakeDynamoDB> {
  const region = opts.region ?? "us-east-1";
  const tables = new Map<string, DynamoTable>();
  const createTable = (input: Record<string, unknown>): DynamoTable => {
    const name = input.TableName;
    const keySchema = input.KeySchema as KeySchemaElement[] | undefined;
    const definitions = input.AttributeDefinitions as DynamoTable["attributeDefinitions"] | undefined;
    if (typeof name !== "string" || !Array.isArray(keySchema) || !Array.isArray(definitions)) {
      throw new DynamoError("ValidationException", "1 validation error detected: TableName, KeySchema and AttributeDefinitions are required", "com.amazon.coral.validate");
    }
    if (tables.has(name)) throw new DynamoError("ResourceInUseException", `Table already exists: ${name}`);
    const throughput = (input.ProvisionedThroughput ?? {}) as { ReadCapacityUnits?: number; WriteCapacityUnits?: number };
    const table: DynamoTable = {
      name,
      keySchema,
      attributeDefinitions: definitions,
      billingMode: input.BillingMode === "PAY_PER_REQUEST" ? "PAY_PER_REQUEST" : "PROVISIONED",
      readCapacity: throughput.ReadCapacityUnits ?? 0,
      writeCapacity: throughput.WriteCapacityUnits ?? 0,
      created: Date.now() / 1000,
      id: randomUUID(),
      items: new Map(),
    };
    tables.set(name, table);
    return table;
  };
  for (const t of opts.tables ?? []) {
    const keySchema: KeySchemaElement[] = [{ AttributeName: t.hashKey, KeyType: "HASH" }];
    const definitions = [{ AttributeName: t.hashKey, AttributeType: "S" }];
    if (t.rangeKey) {
      keySchema.push({ AttributeName: t.rangeKey, KeyType: "RANGE" });
      definitions.push({ AttributeName: t.rangeKey, AttributeType: "S" });
    }
    createTable({ TableName: t.name, KeySchema: keySchema, AttributeDefinitions: definitions, BillingMode: "PAY_PER_REQUEST" });
  }
  const describe = (t: DynamoTable) => {
    let size = 0;
    for (const item of t.items.values()) size += JSON.stringify(item).length;
    return {
      AttributeDefinitions: t.attributeDefinitions,
      TableName: t.name,
      KeySchema: t.keySchema,
      TableStatus: "ACTIVE",
      CreationDateTime: t.created,
      ProvisionedThroughput: { NumberOfDecreasesToday: 0, ReadCapacityUnits: t.readCapacity, WriteCapacityUnits: t.writeCapacity },
      TableSizeBytes: size,
      ItemCount: t.items.size,
      TableArn: `arn:aws:dynamodb:${region}:123456789012:table/${t.name}`,
      TableId: t.id,
      ...(t.billingMode === "PAY_PER_REQUEST" ? { BillingModeSummary: { BillingMode: "PAY_PER_REQUEST", LastUpdateToPayPerRequestDateTime: t.created } } : {}),
      DeletionProtectionEnabled: false,
    };
  };
  const tableOf = (input: Record<string, unknown>): DynamoTable => {
    const t = typeof input.TableName === "string" ? tables.get(input.TableName) : undefined;
    if (!t) throw new DynamoError("ResourceNotFoundException", "Requested resource not found");
    return t;
  };
  const keyOf = (t: DynamoTable, item: Item, what: "item" | "key"): string => {
    const parts: unknown[] = [];
    for (const k of t.keySchema) {
      const v = item[k.AttributeName];
      if (!v) throw new DynamoError("ValidationException", what === "item" ? `One or more parameter values were invalid: Missing the key ${k.AttributeName} in the item` : "The provided key element does not match the schema");
      parts.push(v);
    }
    return JSON.stringify(parts);
  };

  const operations: Record<string, (input: Record<string, unknown>) => unknown> = {
    CreateTable: (input) => ({ TableDescription: describe(createTable(input)) }),
    DescribeTable: (input) => {
      const name = String(input.TableName);
      const t = tables.get(name);
      if (!t) throw new DynamoError("ResourceNotFoundException", `Requested resource not found: Table: ${name} not found`);
      return { Table: describe(t) };
    },
    ListTables: (input) => {
      const limit = typeof input.Limit === "number" ? input.Limit : 100;
      const start = typeof input.ExclusiveStartTableName === "string" ? input.ExclusiveStartTableName : "";
      const names = [...tables.keys()].sort().filter((n) => n > start);
      const page = names.slice(0, limit);
      return names.length > limit ? { LastEvaluatedTableName: page[page.length - 1], TableNames: page } : { TableNames: page };
    },
    PutItem: (input) => {
      const t = tableOf(input);
      const item = input.Item as Item;
      const key = keyOf(t, item, "item");
      const old = t.items.get(key);
      t.items.set(key, item);
      return input.ReturnValues === "ALL_OLD" && old ? { Attributes: old } : {};
    },
    GetItem: (input) => {
      const t = tableOf(input);
      const item = t.items.get(keyOf(t, input.Key as Item, "key"));
      return item ? { Item: item } : {};
    },
    /** Query: the items whose hash key equals the value a `KEY = :v` KeyConditionExpression names. */
    Query: (input) => {
      const t = tableOf(input);
      const hash = t.keySchema.find((k) => k.KeyType === "HASH")!.AttributeName;
      const m = /^\s*(#?\w+)\s*=\s*(:\w+)\s*$/.exec(String(input.KeyConditionExpression ?? ""));
      const names = (input.ExpressionAttributeNames ?? {}) as Record<string, string>;
      if (!m || (m[1]!.startsWith("#") ? names[m[1]!] : m[1]) !== hash) throw new DynamoError("ValidationException", "Query condition missed key schema element", "com.amazon.coral.validate");
      const value = JSON.stringify(((input.ExpressionAttributeValues ?? {}) as Record<string, unknown>)[m[2]!]);
      const items = [...t.items.values()].filter((item) => JSON.stringify(item[hash]) === value);
      return { Items: items, Count: items.length, ScannedCount: items.length };
    },
    DeleteItem: (input) => {
      const t = tableOf(input);
      const key = keyOf(t, input.Key as Item, "key");
      const old = t.items.get(key);
      t.items.delete(key);
      return input.ReturnValues === "ALL_OLD" && old ? { Attributes: old } : {};
    },
  };

  const handler: FakeHandler = (req, body, res) => {
    const send = (status: number, payload: unknown) => {
      const text = JSON.stringify(payload);
      res.writeHead(status, {
        "x-amzn-RequestId": dynamoRequestId(),
        "x-amz-crc32": String(crc32(text) >>> 0),
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": String(Buffer.byteLength(text)),
        Date: new Date().toUTCString(),
      });
      res.end(text);
    };
    const target = req.headers["x-amz-target"];
    const operation = typeof target === "string" && target.startsWith("DynamoDB_20120810.") ? operations[target.slice(18)] : undefined;
    if (req.method !== "POST" || !operation) return send(400, { __type: "com.amazon.coral.service#UnknownOperationException" });
    let input: Record<string, unknown>;
    try {
      input = JSON.parse(body.toString("utf8") || "{}") as Record<string, unknown>;
    } catch {
      return send(400, { __type: "com.amazon.coral.service#SerializationException" });
    }
    try {
      send(200, operation(input));
    } catch (e) {
      if (!(e instanceof DynamoError)) throw e;
      send(400, { __type: `${e.namespace}#${e.code}`, message: e.message });
    }
  };

  const origin = await startFakeOrigin(handler, opts);
  return {
    ...origin,
    tableNames: () => [...tables.keys()].sort(),
    item: (table, key) => {
      const t = tables.get(table);
      return t ? t.items.get(keyOf(t, key, "key")) : undefined;
    },
  };
}

function dynamoRequestId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  let id = "";
  for (const b of randomBytes(52)) id += alphabet[b % 36];
  return id;
}
