// Doctor, the client side: the certificates of every TLS listener, read from their files as a start or
// a reload would read them — names, issuer, chain, expiry — judged like an origin's (expiry within
// EXPIRY_WARN_DAYS is a warning, expired or unreadable a failure).
import type { ListenerConfig } from '../config/schema.ts';
import { describeListenerCertificates, EXPIRY_WARN_DAYS } from '../server/tls.ts';
import type { Severity } from './findings.ts';

export type ListenerCertReport = ReturnType<typeof describeListenerCertificates>[number] & { severity: Severity; message: string };

export function examineListeners(listeners: readonly ListenerConfig[], now = Date.now()): ListenerCertReport[] {
  return describeListenerCertificates(listeners, now).map((c) => {
    const i = c.info;
    if (!i) return { ...c, severity: 'fail', message: `${c.error}: the listener cannot start (or reload) with it` };
    const facts = `"${i.subject}" for ${i.names.join(' ') || '(no SAN)'}, issuer "${i.issuer}", chain of ${i.chain}, expires ${i.validTo.slice(0, 10)} (${i.daysLeft} days)`;
    if (i.daysLeft < 0) return { ...c, severity: 'fail', message: `${facts}: EXPIRED, clients refuse it. Renew it, then reload.` };
    if (i.daysLeft < EXPIRY_WARN_DAYS) return { ...c, severity: 'warn', message: `${facts}: renew it (then reload) within ${i.daysLeft} days.` };
    if (i.chain === 1 && i.issuer !== i.subject) return { ...c, severity: 'warn', message: `${facts}: the file holds no intermediate certificate; clients that do not have it cannot verify the chain. Append the intermediates to ${i.cert}.` };
    return { ...c, severity: 'ok', message: facts };
  });
}

const LABEL: Record<Severity, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

export function formatListeners(r: ListenerCertReport[]): string {
  if (!r.length) return '';
  const lines = ['listener certificates'];
  for (const c of r) lines.push(`  ${LABEL[c.severity]} ${c.listener}  ${c.files.cert}\n${' '.repeat(7)}${c.message}`);
  return `${lines.join('\n')}\n\n`;
}
