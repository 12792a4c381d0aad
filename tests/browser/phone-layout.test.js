// The page on a phone-sized screen: one column, nothing wider than the screen, controls big
// enough to touch, and the same accessible names as on a desktop.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { artifactPath } from './support/artifacts.js';
import { launchBrowser } from './support/browser.js';
import { startServer } from './support/server.js';

let server;
let browser;

before(async () => {
  server = await startServer({ instance: 'A' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.kill();
});

test('at 360 px wide the page fits the screen and its controls are touch-sized', async () => {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 360, height: 740 });
  await page.goto(server.url);
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(scrollWidth <= innerWidth, `page is ${scrollWidth} px wide on a ${innerWidth} px screen`);
  for (const control of [
    page.getByRole('button', { name: 'Start' }),
    page.getByRole('button', { name: 'Mute' }),
    page.getByRole('spinbutton', { name: 'Buffer target' }),
    page.getByRole('slider', { name: 'Volume' }),
  ]) {
    const box = await control.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `${control} is on screen`);
  }
  for (const button of [page.getByRole('button', { name: 'Start' }), page.getByRole('button', { name: 'Mute' })]) {
    assert.ok((await button.boundingBox()).height >= 44, 'buttons are at least 44 px tall');
  }
  // The stats and the log sit below the controls in one column.
  const controls = await page.getByRole('region', { name: 'Playback' }).boundingBox();
  const stream = await page.getByRole('region', { name: 'Stream' }).boundingBox();
  const levels = await page.getByRole('region', { name: 'Levels' }).boundingBox();
  assert.ok(levels.y > controls.y && stream.y > levels.y + levels.height - 1, 'one column');
  await page.screenshot({ path: await artifactPath('phone-layout.png'), fullPage: true });
  await page.close();
});

test('the buffer target can be changed from the keyboard and is kept for the next visit', async () => {
  const page = await browser.newPage(server.url);
  const target = page.getByRole('spinbutton', { name: 'Buffer target' });
  await target.focus();
  await target.fill('150');
  await page.keyboard.press('Tab'); // commits the value, as leaving the field does
  await page.reload();
  assert.equal(await page.getByRole('spinbutton', { name: 'Buffer target' }).inputValue(), '150');
  assert.equal(await page.evaluate(() => window.earshot.stats().targetMs), 150);
  await page.close();
});

test('no console errors', () => {
  assert.deepEqual(browser.problems(), []);
});
