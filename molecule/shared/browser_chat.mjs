// Two people chatting in real browsers: headless Chromium (Debian's) driven by
// playwright-core. Both log in through the login form and open the same room; the first
// posts through the page's form, and the second must see the message appear without a
// reload. Prints one JSON line and saves a screenshot of both windows.
//
//   node browser_chat.mjs BASE ROOM_ID USER1 PASSWORD1 USER2 PASSWORD2 TEXT SCREENSHOT_DIR
import { chromium } from "playwright-core";

const [base, roomId, user1, password1, user2, password2, text, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node browser_chat.mjs BASE ROOM_ID USER1 PW1 USER2 PW2 TEXT SHOT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Root in a container: no user namespaces for the sandbox; /dev/shm is small.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});

async function openRoom(username, password) {
  // The test CA is not in Chromium's store; the CLI clients check it, this one skips it.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  await page.goto(`${base}/accounts/login/`);
  await page.fill("#id_username", username);
  await page.fill("#id_password", password);
  await Promise.all([page.waitForNavigation(), page.click("form button[type=submit]")]);
  if (page.url().includes("/accounts/login/")) throw new Error(`login failed for ${username}`);
  await page.goto(`${base}/rooms/${roomId}/`);
  let loads = 0;
  page.on("load", () => { loads += 1; });
  // The page says "live" once its WebSocket is open.
  await page.waitForFunction(
    () => document.querySelector("#socket-status")?.textContent === "live", null, { timeout: 15000 });
  return { page, loads: () => loads };
}

const result = { received: false };
try {
  const sender = await openRoom(user1, password1);
  const receiver = await openRoom(user2, password2);
  const started = Date.now();
  await sender.page.fill("#message-form [name=message]", text);
  await sender.page.click("#message-form button[type=submit]");
  await receiver.page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages .text")].some((e) => e.textContent === t),
    text, { timeout: 10000 });
  result.received = true;
  result.seconds = (Date.now() - started) / 1000;
  result.receiver_reloads = receiver.loads();
  result.sender_shows_it = await sender.page.locator("#messages .text", { hasText: text }).count();
  await sender.page.screenshot({ path: `${shots}/sender.png` });
  await receiver.page.screenshot({ path: `${shots}/receiver.png` });
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.received ? 0 : 1);
