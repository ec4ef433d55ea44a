// ui-test.mjs - berth's web UI in real headless Chromium (run by
// tests/e2e/ui.bats): log in with the admin token, find the job, see its
// instances RUNNING, read a line the task printed, drain the node.
//
// Environment: BERTH_ADDR, BERTH_TOKEN (the admin's), UI_JOB (a running job
// whose tasks print UI_LOG_LINE), UI_CRON_JOB, UI_INSTANCES, UI_NODE,
// CHROMIUM (the browser), UI_SHOTS (where screenshots go).
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`ui-test: ${k} is not set`);
  return v;
};
const addr = env('BERTH_ADDR');
const adminToken = env('BERTH_TOKEN');
const job = env('UI_JOB');
const cronJob = env('UI_CRON_JOB');
const instances = Number(env('UI_INSTANCES'));
const nodeName = env('UI_NODE');
const logLine = env('UI_LOG_LINE');
const shots = env('UI_SHOTS');
const T = 15000;

const step = (s) => console.log(`ui-test: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const problems = [];
try {
  // The cluster CA is not the browser's: trusted for this context only.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 760 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T);
  // Any script error or CSP violation fails the test.
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // 401 and 404 answers are the UI's business (the login, no update yet);
    // Chromium drops requests when the host's interfaces change (tasks'
    // veths come and go): the UI reads again, the test goes on.
    if (m.type() === 'error' && !/status of 40[14]|ERR_NETWORK_CHANGED/.test(m.text())) problems.push('console: ' + m.text());
  });
  page.on('dialog', (d) => d.accept());

  step('the server\'s root leads to the login page');
  for (let i = 0; ; i++) {
    try {
      await page.goto(addr + '/');
      break;
    } catch (e) {
      if (i >= 3 || !/ERR_NETWORK_CHANGED/.test(e.message)) throw e;
    }
  }
  await page.waitForURL(/\/ui\/#\/login/);
  await page.getByLabel('Token').waitFor();
  await page.screenshot({ path: `${shots}/login.png` });

  step('a wrong token is refused, with the server\'s reason');
  await page.getByLabel('Token').fill('not-a-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#login-error', { hasText: 'Token refused' }).waitFor();

  step('the admin token logs in and the jobs list shows the job');
  await page.getByLabel('Token').fill(adminToken);
  await page.getByRole('button', { name: 'Log in' }).click();
  const jobRow = page.locator(`tr[data-job="${job}"]`);
  await jobRow.waitFor();
  await jobRow.locator('.s-running', { hasText: 'RUNNING' }).first().waitFor();
  const counts = await jobRow.locator('td').last().innerText();
  if (!counts.includes(`RUNNING ${instances}`)) throw new Error(`jobs list: expected "RUNNING ${instances}" in "${counts}"`);
  const token = await page.evaluate(() => sessionStorage.getItem('berth.token'));
  if (token !== adminToken) throw new Error('the token is not kept in sessionStorage');
  await page.screenshot({ path: `${shots}/jobs.png` });

  step('the environment filter hides the job of another environment');
  const env = job.split('/')[1];
  await page.locator('#f-env').selectOption(env);
  await page.waitForURL(new RegExp(`env=${env}`));
  await jobRow.waitFor();
  if (await page.locator(`tr[data-job="${cronJob}"]`).count()) throw new Error(`filter env=${env} still shows ${cronJob}`);
  await page.locator('#f-env').selectOption('');

  step('the job page shows every instance RUNNING, with node, address and ports');
  await page.getByRole('link', { name: job, exact: true }).click();
  await page.getByRole('heading', { name: new RegExp(job) }).waitFor();
  const rows = page.locator('tr[data-instance]');
  await page.waitForFunction((n) => {
    const r = [...document.querySelectorAll('tr[data-instance]')];
    return r.length === n && r.every((x) => x.querySelector('.state').textContent === 'RUNNING');
  }, instances);
  const first = await rows.first().innerText();
  if (!first.includes(nodeName)) throw new Error(`instance 0 row does not name node ${nodeName}: ${first}`);
  if (!/http:\d+/.test(first)) throw new Error(`instance 0 row shows no port: ${first}`);
  await page.locator('details[data-key="i0"] summary').click();
  await page.locator('details[data-key="i0"] ol.events li', { hasText: 'RUNNING' }).first().waitFor();
  await page.screenshot({ path: `${shots}/job.png`, fullPage: true });

  step('the task page tails the task\'s output');
  await rows.first().locator('a').first().click();
  await page.getByRole('heading', { name: /-0-/ }).waitFor();
  await page.locator('#log', { hasText: logLine }).waitFor();
  await page.screenshot({ path: `${shots}/task.png`, fullPage: true });
  step('stderr is a switch away');
  await page.getByLabel('stderr').check();
  await page.locator('#log', { hasText: 'to stderr' }).waitFor();
  await page.getByLabel('stdout').check();
  await page.locator('#log', { hasText: logLine }).waitFor();

  step('an update shows its progress, and pauses, resumes and rolls back from its buttons');
  const auth = { Authorization: 'Bearer ' + adminToken };
  const spec = {
    job, instances,
    task: { command: ['/bin/sh', '-c', 'echo v2; exec sleep 300'], resources: { cpu: 0.01, memory: '16MiB', ports: ['http'] } },
    update: { batch_size: 1, watch: '20s' },
  };
  const sub = await ctx.request.post(`${addr}/v1/jobs`, { headers: auth, data: spec });
  if (!sub.ok()) throw new Error(`submitting version 2: ${sub.status()} ${await sub.text()}`);
  await page.locator('.crumbs').getByRole('link', { name: job, exact: true }).click();
  const upd = page.locator('section.update');
  await upd.locator('.state', { hasText: 'ROLLING_FORWARD' }).waitFor();
  await upd.getByText(/version 1 → 2/).waitFor();
  await upd.locator('progress').waitFor();
  await page.screenshot({ path: `${shots}/update.png`, fullPage: true });
  await upd.getByRole('button', { name: 'Pause' }).click();
  await upd.locator('.state', { hasText: 'ROLL_FORWARD_PAUSED' }).waitFor();
  await upd.getByRole('button', { name: 'Resume' }).click();
  await upd.locator('.state', { hasText: 'ROLLING_FORWARD' }).waitFor();
  await upd.getByRole('button', { name: 'Roll back' }).click();
  await upd.locator('.state', { hasText: /^ROLL(ING|ED)_BACK$/ }).waitFor();

  step('the cron page lists the cron job and its next run');
  await page.getByRole('link', { name: 'Cron' }).click();
  await page.getByRole('link', { name: cronJob }).waitFor();
  await page.screenshot({ path: `${shots}/cron.png` });

  step('the nodes page drains the node');
  await page.getByRole('link', { name: 'Nodes' }).click();
  const nodeRow = page.locator(`tr[data-node="${nodeName}"]`);
  await nodeRow.locator('.state', { hasText: 'ACTIVE' }).waitFor();
  await page.screenshot({ path: `${shots}/nodes.png` });
  await nodeRow.getByRole('button', { name: 'Drain' }).click();
  await nodeRow.locator('.state', { hasText: /^DRAIN(ING|ED)$/ }).waitFor();
  await nodeRow.getByRole('button', { name: 'Activate' }).waitFor();
  // With the event stream (GET /v1/events) the page says it is live;
  // without it, that it reads again every 5 s.
  const mode = process.env.UI_EXPECT_LIVE === '1' ? '● live' : '↻ every 5 s';
  await page.locator('#live', { hasText: mode }).waitFor();
  step(`the page follows changes: "${mode}"`);
  await page.screenshot({ path: `${shots}/nodes-draining.png` });
  step('a change made elsewhere (the API) shows without a reload');
  const act = await ctx.request.post(`${addr}/v1/nodes/${encodeURIComponent(nodeName)}/activate`, { headers: auth });
  if (!act.ok()) throw new Error(`activate: ${act.status()}`);
  await nodeRow.locator('.state', { hasText: 'ACTIVE' }).waitFor({ timeout: 8000 });
  await page.getByRole('button', { name: 'Drain' }).click();
  await nodeRow.locator('.state', { hasText: /^DRAIN(ING|ED)$/ }).waitFor();

  step('logging out forgets the token');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Token').waitFor();
  if (await page.evaluate(() => sessionStorage.getItem('berth.token'))) throw new Error('token kept after log out');
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
step('ok');
