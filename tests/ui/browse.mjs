// Drive Debian's headless Chromium through a list of steps; print what the page showed.
//
//   node tests/ui/browse.mjs < request.json > answer.json
//
// request: {"chromium": "/usr/bin/chromium", "screenshots": "dir", "timeout_ms": 20000,
//           "steps": [step, ...]}
// steps (one verb each; "selector" is a Playwright selector, "text" an optional substring
// the element must contain):
//   {"goto": URL}                                 open URL (then wait for what it shows:
//                                                 a running workflow's page polls forever)
//   {"wait": selector, "text"?: str, "frame"?: s} wait until a matching element is visible
//   {"click": selector, "text"?: str}
//   {"fill": selector, "value": str}              type into an input (replacing its value)
//   {"press": key, "selector"?: selector}         e.g. "Enter"
//   {"read": selector, "as": name, "cells"?: sel} innerText of every match, or with "cells"
//                                                 the innerText of each cell of each match,
//                                                 plus the match's data-* attributes;
//                                                 "frame": selector reads inside that iframe
//                                                 (once it shows some text)
//   {"screenshot": name}                          PNG in the screenshots directory
// answer: {"ok": true, "url": final URL, "read": {name: [...]}, "screenshots": [paths],
//          "launch_ms": browser start, "ms": [duration of each step]}
//      or {"ok": false, "error": message, "step": index, ...}: exit code 1, with a
//         screenshot "failed-at-step-N" of what the page showed then.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

// Without the background-networking flags Chromium keeps calling home on a closed network.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function locate(page, step, selector) {
  const scope = step.frame === undefined ? page : page.frameLocator(step.frame);
  const found = scope.locator(selector);
  return step.text === undefined ? found : found.filter({ hasText: step.text });
}

// The Web UI renders summaries and details in iframes that it replaces as data arrives
// (and, for a running workflow, on every refresh): read again until one read holds.
async function readFrame(page, step, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await locate(page, step, step.read).first().waitFor({ state: 'visible' });
      const found = await read(page, step);
      if (found.length && found.every((element) => element.text.trim())) return found;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`${step.frame} ${step.read} stayed empty`);
    await page.waitForTimeout(200);
  }
}

async function read(page, step) {
  return locate(page, { frame: step.frame }, step.read).evaluateAll(
    (elements, cells) =>
      elements.map((element) => {
        const data = { ...element.dataset };
        if (!cells) return { text: element.innerText, data };
        const parts = Array.from(element.querySelectorAll(cells), (cell) => cell.innerText);
        return { cells: parts, data };
      }),
    step.cells ?? null,
  );
}

async function run(request) {
  const started = Date.now();
  const answer = { ok: true, url: null, read: {}, screenshots: [], ms: [] };
  const shots = request.screenshots;
  fs.mkdirSync(shots, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'largeattr-chromium-'));
  const timeout = request.timeout_ms ?? 20000;
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: request.chromium ?? '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: 1400, height: 1000 },
    timeout,
  });
  // Only the page under test: the UI also asks the internet for a news feed.
  await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, (route) => route.abort());
  let index = -1;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  const shoot = async (name) => {
    const file = path.join(shots, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    answer.screenshots.push(file);
  };
  answer.launch_ms = Date.now() - started;
  try {
    for (const [i, step] of request.steps.entries()) {
      index = i;
      const started = Date.now();
      if (step.goto !== undefined) {
        await page.goto(step.goto, { waitUntil: 'load' });
      } else if (step.wait !== undefined) {
        await locate(page, step, step.wait).first().waitFor({ state: 'visible' });
      } else if (step.click !== undefined) {
        await locate(page, step, step.click).first().click();
      } else if (step.fill !== undefined) {
        await page.locator(step.fill).first().fill(step.value);
      } else if (step.press !== undefined) {
        const target = step.selector ? page.locator(step.selector).first() : page.keyboard;
        await target.press(step.press);
      } else if (step.read !== undefined) {
        answer.read[step.as] =
          step.frame === undefined ? await read(page, step) : await readFrame(page, step, timeout);
      } else if (step.screenshot !== undefined) {
        await shoot(step.screenshot);
      } else {
        throw new Error(`unknown step ${JSON.stringify(step)}`);
      }
      answer.ms.push(Date.now() - started);
    }
    answer.url = page.url();
  } catch (error) {
    answer.ok = false;
    answer.step = index;
    answer.error = String(error?.message ?? error);
    answer.url = page.url();
    await shoot(`failed-at-step-${index}`).catch(() => {});
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  return answer;
}

const input = fs.readFileSync(0, 'utf8');
const answer = await run(JSON.parse(input));
process.stdout.write(JSON.stringify(answer) + '\n');
process.exitCode = answer.ok ? 0 : 1;
