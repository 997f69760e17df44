// Reads the admin event stream (text/event-stream) with fetch so the bearer token goes in a header
// (EventSource cannot send one, and a token in a URL ends up in logs and history).

export class Unauthorized extends Error {}

export async function readEvents(url: string, token: string | undefined, onEvent: (event: string, data: unknown) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store', signal });
  if (res.status === 401 || res.status === 403) throw new Unauthorized(((await res.json().catch(() => ({}))) as { message?: string }).message ?? 'unauthorized');
  if (!res.ok || !res.body) throw new Error(`event stream: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join('\n')));
    }
  }
}
