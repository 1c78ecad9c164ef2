import { expect, feed, signIn, test } from "./server";

test("after a server restart the page reconnects by itself and shows missed events once, in order", async ({
  page,
  server,
}) => {
  await server.post({ action: "before.restart", description: "seen before the crash" });
  await signIn(page);
  await expect(feed(page)).toContainText("seen before the crash");

  await server.stop("SIGKILL");
  await expect(page.getByRole("status", { name: /Connection: (reconnecting|offline)/ })).toBeVisible();

  // Restart and post at once, before the page's next reconnect attempt.
  await server.start();
  const missed = ["missed one", "missed two", "missed three"];
  const receipt = await server.post(missed.map((d) => ({ action: "during.outage", description: d })));
  expect(receipt.lastSeq - receipt.firstSeq).toBe(2);

  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible({ timeout: 15_000 });
  const items = feed(page).getByRole("listitem");
  await expect(items).toHaveCount(5);
  await expect(items.nth(0)).toContainText("missed three");
  await expect(items.nth(1)).toContainText("missed two");
  await expect(items.nth(2)).toContainText("missed one");
  await expect(items.nth(3)).toContainText("signed in to the dashboard");
  await expect(items.nth(4)).toContainText("seen before the crash");
  for (const d of missed) {
    await expect(feed(page).getByRole("listitem").filter({ hasText: d })).toHaveCount(1);
  }
  await expect(page.getByLabel(/^Events: /)).toHaveAttribute("aria-label", "Events: 5");
});
