/**
 * The SOCKS5 handshake (RFC 1928), with username/password authentication (RFC 1929) when the
 * proxy requires it, as mitmproxy's Socks5Proxy layer does: only CONNECT is supported. What flows
 * through the tunnel afterwards is routed exactly like a CONNECT tunnel's (TLS intercepted or
 * passed through, plain HTTP parsed by Node), so this module only knows the handshake's bytes.
 */
import net from "node:net";

const VERSION = 0x05;
const AUTH_VERSION = 0x01;
const METHOD_NONE = 0x00;
const METHOD_USER_PASSWORD = 0x02;
const NO_ACCEPTABLE_METHODS = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** SOCKS5 reply codes (RFC 1928 §6). */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

/** A reply with an all-zero IPv4 bound address, as mitmproxy sends (clients ignore it for CONNECT). */
export function socksReply(code: number): Buffer {
  return Buffer.from([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

export interface Socks5Request {
  host: string;
  port: number;
  /** The user name the client authenticated with, if authentication was required. */
  username: string | null;
  /** Bytes the client sent after its request (before our reply): the start of the tunnel. */
  rest: Buffer;
}

export interface Socks5Options {
  /** Whether the client must authenticate (the proxyauth option is set). */
  authRequired: boolean;
  /** Checks a user name and password (the socks5Auth hook). */
  authenticate(username: string, password: string): Promise<boolean>;
}

/** Why a handshake ended without a tunnel: logged by the caller; the client has had its answer. */
export class Socks5Refusal extends Error {}

/**
 * Runs the handshake on `socket` up to (not including) the final reply, which the caller sends
 * once it knows whether the tunnel can be opened. Rejects with a Socks5Refusal after answering the
 * client (where SOCKS5 has an answer) and ending the socket.
 */
export function socks5Handshake(socket: net.Socket, opts: Socks5Options): Promise<Socks5Request> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let state: "greeting" | "auth" | "request" | "busy" = "greeting";
    let username: string | null = null;

    const finish = () => {
      socket.removeListener("data", onData);
      socket.removeListener("close", onClose);
    };
    const refuse = (message: string, answer?: Buffer) => {
      finish();
      if (answer) socket.end(answer);
      else socket.end();
      reject(new Socks5Refusal(message));
    };
    const onClose = () => {
      finish();
      reject(new Socks5Refusal(buf.length ? `client closed the connection during the SOCKS5 handshake (${state})` : "client closed the connection before the SOCKS5 handshake"));
    };

    const step = (): void => {
      if (state === "greeting") {
        if (buf.length < 2) return;
        if (buf[0] !== VERSION) {
          const http = /^[A-Z]{3,7} /.test(buf.subarray(0, 8).toString("latin1"));
          if (http) {
            const body = "sluice: this port is a SOCKS5 proxy (mode socks5); use it as socks5h://HOST:PORT, or send HTTP proxy requests to a regular-mode listener\n";
            return refuse(
              "an HTTP request arrived on the SOCKS5 listener: answered 400",
              Buffer.from(`HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`),
            );
          }
          return refuse(`not a SOCKS5 greeting (version byte 0x${buf[0]!.toString(16).padStart(2, "0")}, expected 0x05): closed`);
        }
        const nMethods = buf[1]!;
        if (buf.length < 2 + nMethods) return;
        const methods = buf.subarray(2, 2 + nMethods);
        const method = opts.authRequired ? METHOD_USER_PASSWORD : METHOD_NONE;
        if (!methods.includes(method)) {
          return refuse(
            opts.authRequired
              ? "the client offered no username/password authentication, which proxyauth requires: refused (e.g. curl --socks5-hostname HOST:PORT --proxy-user USER:PASS)"
              : "the client offered no SOCKS5 method without authentication: refused",
            Buffer.from([VERSION, NO_ACCEPTABLE_METHODS]),
          );
        }
        socket.write(Buffer.from([VERSION, method]));
        buf = buf.subarray(2 + nMethods);
        state = opts.authRequired ? "auth" : "request";
        return step();
      }
      if (state === "auth") {
        // RFC 1929: VER ULEN UNAME PLEN PASSWD
        if (buf.length < 2) return;
        if (buf[0] !== AUTH_VERSION) return refuse(`bad SOCKS5 username/password version 0x${buf[0]!.toString(16)} (expected 0x01): closed`, Buffer.from([AUTH_VERSION, 0x01]));
        const userLen = buf[1]!;
        if (buf.length < 3 + userLen) return;
        const passLen = buf[2 + userLen]!;
        if (buf.length < 3 + userLen + passLen) return;
        const user = buf.subarray(2, 2 + userLen).toString("utf8");
        const password = buf.subarray(3 + userLen, 3 + userLen + passLen).toString("utf8");
        buf = buf.subarray(3 + userLen + passLen);
        state = "busy";
        opts.authenticate(user, password).then(
          (ok) => {
            if (socket.destroyed) return refuse("client closed the connection during SOCKS5 authentication");
            if (!ok) return refuse(`SOCKS5 authentication failed for user ${JSON.stringify(user)}: refused`, Buffer.from([AUTH_VERSION, 0x01]));
            username = user;
            socket.write(Buffer.from([AUTH_VERSION, 0x00]));
            state = "request";
            step();
          },
          (err: Error) => refuse(`SOCKS5 authentication failed: ${err.message}`, Buffer.from([AUTH_VERSION, 0x01])),
        );
        return;
      }
      if (state === "request") {
        // VER CMD RSV ATYP DST.ADDR DST.PORT
        if (buf.length < 5) return;
        if (buf[0] !== VERSION) return refuse(`bad SOCKS5 request version 0x${buf[0]!.toString(16)}: closed`, socksReply(SocksReply.generalFailure));
        const cmd = buf[1]!;
        if (cmd !== CMD_CONNECT) {
          const name = cmd === 0x02 ? "BIND" : cmd === 0x03 ? "UDP ASSOCIATE" : `0x${cmd.toString(16)}`;
          return refuse(`SOCKS5 command ${name} is not supported (only CONNECT): answered "command not supported"`, socksReply(SocksReply.commandNotSupported));
        }
        const atyp = buf[3]!;
        const addrLen = atyp === ATYP_IPV4 ? 4 : atyp === ATYP_IPV6 ? 16 : atyp === ATYP_DOMAIN ? 1 + buf[4]! : -1;
        if (addrLen < 0) return refuse(`SOCKS5 address type 0x${atyp.toString(16)} is not supported: answered "address type not supported"`, socksReply(SocksReply.addressTypeNotSupported));
        const total = 4 + addrLen + 2;
        if (buf.length < total) return;
        const addr = buf.subarray(4, 4 + addrLen);
        const host =
          atyp === ATYP_IPV4 ? [...addr].join(".") :
          atyp === ATYP_IPV6 ? ipv6Text(addr) :
          addr.subarray(1).toString("latin1");
        const port = buf.readUInt16BE(4 + addrLen);
        if (atyp === ATYP_DOMAIN && !/^[A-Za-z0-9._-]+$/.test(host)) {
          return refuse(`SOCKS5 CONNECT to ${JSON.stringify(host)}, which is not a host name: answered "general failure"`, socksReply(SocksReply.generalFailure));
        }
        if (port === 0) return refuse(`SOCKS5 CONNECT to ${host}:0: answered "connection refused"`, socksReply(SocksReply.connectionRefused));
        finish();
        resolve({ host, port, username, rest: buf.subarray(total) });
      }
    };

    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (state !== "busy") step();
    };
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}

/** The canonical text form of a 16-byte IPv6 address (zeros compressed), as net would print it. */
function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  const mapped = groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff";
  if (mapped) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  // Compress the longest run of zero groups.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}
