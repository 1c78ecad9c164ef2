// The explorer in event-time order: a backfill that arrives shuffled lists by when events
// happened, headers sort, cursor pages have no gap or repeat while events keep arriving, and a
// live event lands at its place or is counted where it cannot be shown yet.
import { expect, signIn, test, TrailwatchServer } from "./server";
import type { Page } from "@playwright/test";

const DAY = 86_400_000;
const rows = (page: Page) => page.getByRole("table").locator("tbody tr");

/** `n` events spread over the 20 days before yesterday, in an order shuffled against their
 * times (a permutation, since 37 and `n` share no factor), with users and risk scores. */
function backfill(n: number, tag = "backfill"): object[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const k = (i * 37) % n;
    return {
      action: `${tag}.${k}`,
      user: { id: `u${(k * 7) % 11}` },
      riskScore: (k * 13) % 101,
      timestamp: new Date(now - DAY - (k * 20 * DAY) / n).toISOString(),
    };
  });
}

interface Shown {
  seq: number;
  ts: number;
  user: string;
  risk: number;
  action: string;
}

/** What the table shows, row by row. */
async function shown(page: Page): Promise<Shown[]> {
  return rows(page).evaluateAll((trs) =>
    trs.map((tr) => {
      const text = (sel: string) => tr.querySelector(sel)?.textContent?.trim() ?? "";
      const risk = parseInt(text(".col-risk"), 10);
      return {
        seq: Number((tr as HTMLElement).dataset.seq),
        ts: Date.parse(tr.querySelector("time")?.getAttribute("datetime") ?? ""),
        user: text(".col-user"),
        risk: Number.isNaN(risk) ? -1 : risk,
        action: text(".col-action"),
      };
    }),
  );
}

function expectOrdered<T>(list: T[], key: (x: T) => number | string, descending: boolean, what: string): void {
  for (let i = 1; i < list.length; i++) {
    const [a, b] = [key(list[i - 1]), key(list[i])];
    expect(descending ? a >= b : a <= b, `${what}: row ${i} (${a} then ${b})`).toBe(true);
  }
}

async function openExplorer(page: Page, path = "/events"): Promise<void> {
  await page.goto(path);
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
}

async function postLate(server: TrailwatchServer, action: string, at: number): Promise<number> {
  const receipt = await server.post({ action, user: { id: "late" }, timestamp: new Date(at).toISOString() });
  return receipt.firstSeq;
}

test("a shuffled backfill lists by event time, and the headers sort in the URL", async ({ page, server }) => {
  await server.post(backfill(60));
  await signIn(page);
  await openExplorer(page);
  // The backfill and the sign-in, which Trailwatch records as its own event.
  await expect(rows(page)).toHaveCount(61);
  const byTime = await shown(page);
  expectOrdered(byTime, (r) => r.ts, true, "event time, newest first");
  // Not arrival order: the backfill arrived shuffled.
  expect(byTime.some((r, i) => i > 0 && r.seq > byTime[i - 1].seq)).toBe(true);
  await expect(page.getByRole("columnheader", { name: "Time" })).toHaveAttribute("aria-sort", "descending");

  const risk = page.getByRole("columnheader", { name: "Risk" });
  await risk.getByRole("button").click();
  await expect(page).toHaveURL(/sort=risk(%3A|:)desc/);
  await expect(risk).toHaveAttribute("aria-sort", "descending");
  expectOrdered(await shown(page), (r) => r.risk, true, "risk, highest first");

  await risk.getByRole("button").click();
  await expect(page).toHaveURL(/sort=risk(%3A|:)asc/);
  await expect(risk).toHaveAttribute("aria-sort", "ascending");
  expectOrdered(await shown(page), (r) => r.risk, false, "risk, lowest first");

  await page.getByRole("columnheader", { name: "User" }).getByRole("button").click();
  await expect(page).toHaveURL(/sort=user(%3A|:)asc/);
  await expect(page.getByRole("columnheader", { name: "User" })).toHaveAttribute("aria-sort", "ascending");
  expectOrdered(await shown(page), (r) => r.user, false, "user, A to Z");

  // The URL holds the order: opened afresh, the view is the same.
  await openExplorer(page, new URL(page.url()).pathname + new URL(page.url()).search);
  await expect(page.getByRole("columnheader", { name: "User" })).toHaveAttribute("aria-sort", "ascending");
  expectOrdered(await shown(page), (r) => r.user, false, "user, A to Z, reopened");

  // Arrival order is one choice away in the sort menu.
  await page.getByRole("combobox", { name: "Sort by" }).selectOption("seq");
  await expect(page).toHaveURL(/sort=seq(%3A|:)desc/);
  expectOrdered(await shown(page), (r) => r.seq, true, "arrival, newest first");
});

test("Load more pages without a gap or a repeat while events keep arriving", async ({ page, server }) => {
  const { firstSeq, lastSeq } = await server.post(backfill(250));
  await signIn(page);
  await openExplorer(page);
  await expect(rows(page)).toHaveCount(100);
  const loadMore = page.getByRole("button", { name: "Load more" });
  let round = 0;
  while (await loadMore.isVisible()) {
    // Events land above and below the loaded rows between pages.
    await postLate(server, `late.old.${round}`, Date.now() - DAY - Math.random() * 20 * DAY);
    await postLate(server, `late.mid.${round}`, Date.now() - DAY - Math.random() * 5 * DAY);
    const before = await rows(page).count();
    await loadMore.click();
    await expect(rows(page)).not.toHaveCount(before);
    round++;
  }
  expect(round).toBeGreaterThanOrEqual(2);
  const all = await shown(page);
  expectOrdered(all, (r) => r.ts, true, "event time across pages");
  const seqs = all.map((r) => r.seq);
  expect(new Set(seqs).size, "no row shown twice").toBe(seqs.length);
  for (let seq = firstSeq; seq <= lastSeq; seq++) {
    expect(seqs, `#${seq} of the backfill`).toContain(seq);
  }
});

test("a live event lands at its place, and one below the loaded rows is counted", async ({ page, server }) => {
  await server.post(backfill(30));
  await signIn(page);
  await openExplorer(page);
  await expect(rows(page)).toHaveCount(31);

  // Ten days back: between backfilled rows, not at the top.
  await postLate(server, "late.middle", Date.now() - 10 * DAY);
  await expect(rows(page)).toHaveCount(32);
  let list = await shown(page);
  const at = list.findIndex((r) => r.action === "late.middle");
  expect(at).toBeGreaterThan(5);
  expectOrdered(list, (r) => r.ts, true, "after a live event in the middle");

  // The newest event goes on top.
  await postLate(server, "late.now", Date.now());
  await expect(rows(page).first()).toHaveAttribute("aria-label", /late\.now/);
  expectOrdered(await shown(page), (r) => r.ts, true, "after a live event on top");

  // With more pages to load, an event older than every loaded row is counted, not shown.
  await server.post(backfill(120, "more"));
  await openExplorer(page);
  await expect(rows(page)).toHaveCount(100);
  await postLate(server, "late.ancient", Date.now() - 60 * DAY);
  await expect(page.getByText("1 new event earlier in time")).toBeVisible();
  await expect(rows(page)).toHaveCount(100);
  list = await shown(page);
  expect(list.some((r) => r.action === "late.ancient")).toBe(false);
  // Loading the pages brings it in at its place, and the count goes.
  const loadMore = page.getByRole("button", { name: "Load more" });
  while (await loadMore.isVisible()) {
    const before = await rows(page).count();
    await loadMore.click();
    await expect(rows(page)).not.toHaveCount(before);
  }
  await expect(rows(page).last()).toHaveAttribute("aria-label", /late\.ancient/);
  await expect(page.getByText("1 new event earlier in time")).toHaveCount(0);
});
