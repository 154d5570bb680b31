// A real-browser check of a BIDS App report: headless Chromium opens the page offline, every
// figure must load, no script error or failed request, and a full-page screenshot is written.
//   npm install @sparticuz/chromium puppeteer-core   (Chromium ships inside the npm package)
//   node scripts/report_screenshot.mjs /abs/path/OUTPUT_DIR/sub-X.html shot.png
import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const [pagePath, out] = process.argv.slice(2);
const browser = await puppeteer.launch({
  args: chromium.args,
  executablePath: await chromium.executablePath(),
  headless: true,
});
const page = await browser.newPage();
await page.setViewport({ width: 1400, height: 900 });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("requestfailed", (r) => errors.push("request failed: " + r.url().slice(0, 80)));
await page.goto("file://" + pagePath, { waitUntil: "load" });
const images = await page.$$eval("img", (imgs) => imgs.map((i) => ({ loaded: i.complete, width: i.naturalWidth })));
await page.screenshot({ path: out, fullPage: true });
console.log(JSON.stringify({ browser: await browser.version(), images, errors }));
await browser.close();
process.exit(errors.length || images.some((i) => !i.loaded || !i.width) ? 1 : 0);
