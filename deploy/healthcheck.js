// Container health probe: GET a path of the admin plane (default /healthz) on loopback, exit 0 on 2xx.
// Used by the Dockerfile HEALTHCHECK and the Kubernetes exec probes, so the admin token (when set, from
// LACQUER_ADMIN_TOKEN) never has to appear in a manifest. Plain JavaScript: runs with any Node >= 18.
const path = process.argv[2] ?? '/healthz';
const port = process.env.LACQUER_ADMIN_PORT ?? '6082';
const token = process.env.LACQUER_ADMIN_TOKEN;
fetch(`http://127.0.0.1:${port}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(2500) }).then(
  (r) => process.exit(r.ok ? 0 : 1),
  () => process.exit(1),
);
