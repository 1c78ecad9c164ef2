import { expect, feed, signIn, test } from "./server";
import type { Page } from "@playwright/test";

/** A `datetime-local` value for `ms` in the browser's own time zone. */
async function localInput(page: Page, ms: number): Promise<string> {
  return page.evaluate((t) => {
    const d = new Date(t - new Date(t).getTimezoneOffset() * 60_000);
    return d.toISOString().slice(0, 19);
  }, ms);
}

test("a past range plays back into the counters and the feed, and the scrubber seeks", async ({ page, server }) => {
  const base = Math.floor(Date.now() / 1000) * 1000 - 10 * 60_000;
  const outcomes = ["success", "denied", "success", "failure", "denied", "success"];
  await server.post(
    outcomes.map((outcome, i) => ({
      timestamp: new Date(base + i * 10_000).toISOString(),
      action: `step.${i + 1}`,
      outcome,
      description: `incident step ${i + 1}`,
    })),
  );
  await signIn(page);
  await page.goto("/replay");
  const from = page.getByLabel("From", { exact: true });
  await expect(from).not.toHaveValue("");
  await from.fill(await localInput(page, base - 5_000));
  await page.getByLabel("To", { exact: true }).fill(await localInput(page, base + 55_000));
  await page.getByRole("button", { name: "Load range" }).click();

  const clock = page.getByRole("status").filter({ hasText: "events" });
  await expect(clock).toContainText("0 of 6 events");
  const stat = (label: string) => page.getByLabel(new RegExp(`^${label}: `));
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 0");

  await page.getByLabel("Speed").selectOption("100");
  await page.getByRole("button", { name: "Play" }).click();
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 6");
  await expect(stat("Denied")).toHaveAttribute("aria-label", "Denied: 2");
  await expect(page.getByRole("button", { name: "Play" })).toBeVisible();
  const items = page.getByRole("list", { name: "Replayed activity" }).getByRole("listitem");
  await expect(items).toHaveCount(6);
  await expect(items.first()).toContainText("incident step 6");
  await expect(items.last()).toContainText("incident step 1");

  // Back to just after the third step.
  await page.getByLabel("Replay position").evaluate((el, t) => {
    const input = el as HTMLInputElement;
    input.value = String(t);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }, base + 21_000);
  await expect(clock).toContainText("3 of 6 events");
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 3");
  await expect(stat("Denied")).toHaveAttribute("aria-label", "Denied: 1");
  await expect(items).toHaveCount(3);
  await expect(feed(page)).toHaveCount(0);
});
