// A person's consent in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core from tests/peers/oidc): open roomsvc's start link, log in and consent
// at the provider, and let the browser land on roomsvc's callback page.
// Usage: node browser_consent.mjs <start_url> <login>
// Prints one JSON line: {"status", "startText", "heading", "text", "cookiesAtProvider", "cookiesAfter"}.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const require = createRequire(join(here, '..', 'peers', 'oidc', 'package.json'));
const { chromium } = require('playwright-core');

const [startUrl, login] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'roomsvc-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage'],
});
try {
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    return u.hostname === '127.0.0.1' ? route.continue() : route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  let callbackStatus = 0;
  page.on('response', (r) => { if (new URL(r.url()).pathname === '/oauth/callback') callbackStatus = r.status(); });
  await page.goto(startUrl);
  // roomsvc's start page says who asks and whose credential it will be; Continue goes on
  const startText = await page.textContent('body');
  await page.click('button[type=submit]');
  await page.waitForSelector('input[name=prompt][value=login]', { state: 'attached', timeout: 15000 });
  const binding = async () => (await context.cookies()).filter((c) => c.name.startsWith('roomsvc_oauth_'))
    .map((c) => ({ httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  const cookiesAtProvider = await binding();
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  await page.waitForSelector('input[name=prompt][value=consent]', { state: 'attached', timeout: 15000 });
  await page.click('button[type=submit]');
  await page.waitForURL('**/oauth/callback?**', { timeout: 15000 });
  await page.waitForSelector('h1', { timeout: 15000 });
  const cookiesAfter = await binding();
  process.stdout.write(`${JSON.stringify({
    status: callbackStatus,
    startText,
    heading: await page.textContent('h1'),
    text: await page.textContent('body'),
    cookiesAtProvider,
    cookiesAfter,
  })}\n`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
