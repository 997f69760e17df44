// The connections of the Redis coordinator: a plain client (`redis://`, `rediss://`) or one that finds the
// master through Sentinel and follows failovers (`redis+sentinel://`). Both node-redis flavours behind the
// handful of operations the coordinator uses.
import { createRequire } from 'node:module';
import type * as Redis from 'redis';

type Args = readonly (string | Buffer)[];

/**
 * node-redis is loaded when a connection is opened, not when the process starts: it is 650 modules that a
 * Lacquer without `fleet` never uses (idle RSS, issue 12).
 */
const redis = (): typeof Redis => createRequire(import.meta.url)('redis') as typeof Redis;

/** RESP3 blob string (`$`); checked against node-redis's RESP_TYPES by the type. */
const BLOB_STRING: (typeof Redis.RESP_TYPES)['BLOB_STRING'] = 36;
/** Bodies come back as Buffers, everything else as strings. */
export const BUFFERS = { typeMapping: { [BLOB_STRING]: Buffer } } as const;

export type Conn = {
  readonly isReady: boolean;
  readonly isOpen: boolean;
  send<T>(args: Args, opts?: typeof BUFFERS): Promise<T>;
  /** MULTI … EXEC. */
  transaction(commands: readonly Args[]): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  on(event: 'error', fn: (err: Error) => void): void;
  on(event: 'ready', fn: () => void): void;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
};

export type ConnOptions = {
  url: string;
  connectTimeoutMs: number;
  /** false: one attempt, no reconnection (the doctor). */
  reconnectStrategy: false | ((retries: number) => number);
};

/** redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db] */
const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^:@/]*):([^@/]*)@)?([^/]+)\/([^/]+)(?:\/(\d+))?$/;

/** Two connections: one for commands, one for the subscription (a subscribed connection takes no commands). */
export function openConns(o: ConnOptions): { cmd: Conn; sub: Conn } {
  const { createClient, createSentinel } = redis();
  const m = SENTINEL_URL.exec(o.url);
  if (!m) {
    const client = createClient({
      url: o.url,
      // Fail at once while disconnected instead of queueing behind a dead socket.
      disableOfflineQueue: true,
      pingInterval: 1000,
      socket: { connectTimeout: o.connectTimeoutMs, reconnectStrategy: o.reconnectStrategy },
    });
    const wrap = (c: typeof client): Conn =>
      conn(
        c,
        (args, opts) => c.sendCommand([...args], opts),
        (commands) => {
          const t = c.multi();
          for (const a of commands) t.addCommand([...a]);
          return t.exec();
        },
      );
    return { cmd: wrap(client), sub: wrap(client.duplicate()) };
  }
  const [, username, password, hosts, name, db] = m;
  const nodes = hosts!.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
  });
  const make = () =>
    createSentinel({
      name: name!,
      sentinelRootNodes: nodes,
      nodeClientOptions: {
        ...(password ? { password: decodeURIComponent(password) } : {}),
        ...(username ? { username: decodeURIComponent(username) } : {}),
        ...(db ? { database: Number(db) } : {}),
        disableOfflineQueue: true,
        socket: { connectTimeout: o.connectTimeoutMs, reconnectStrategy: o.reconnectStrategy },
      },
      sentinelClientOptions: { socket: { connectTimeout: o.connectTimeoutMs, reconnectStrategy: o.reconnectStrategy } },
    });
  const wrap = (c: ReturnType<typeof make>): Conn =>
    conn(
      c,
      (args, opts) => c.sendCommand(false, [...args], opts),
      (commands) => {
        const t = c.multi();
        for (const a of commands) t.addCommand(false, [...a]);
        return t.exec();
      },
    );
  return { cmd: wrap(make()), sub: wrap(make()) };
}

/** What both node-redis flavours have in common, as the coordinator uses it. */
type Common = {
  readonly isReady: boolean;
  readonly isOpen: boolean;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- EventEmitter's listener signature
  on(event: string, fn: (...args: any[]) => void): unknown;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
};

function conn(c: Common, send: (args: Args, opts?: typeof BUFFERS) => Promise<unknown>, transaction: Conn['transaction']): Conn {
  return {
    get isReady() {
      return c.isReady;
    },
    get isOpen() {
      return c.isOpen;
    },
    send: <T>(args: Args, opts?: typeof BUFFERS) => send(args, opts) as Promise<T>,
    transaction,
    subscribe: (channel, listener) => c.subscribe(channel, listener),
    on(event: 'error' | 'ready', fn: (err: Error) => void) {
      c.on(event, fn);
    },
    connect: () => c.connect(),
    close: () => c.close(),
    destroy: () => void c.destroy(),
  };
}
