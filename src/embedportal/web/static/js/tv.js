// TV mode: every chosen report is embedded once, in its own slot with its own token keeper, and
// the slots take turns on screen. Keeping all of them embedded (rather than re-embedding one per
// turn) makes each turn instant, with no loading screen and no token request per turn, and a
// report that is off screen keeps its token fresh, so it is never shown expired. The price is
// one iframe per report, hence the server's limit on reports per screen (docs/token-api.md).

import { mountSlot } from './viewer.js';

const stage = document.getElementById('tv');
const slots = [...stage.querySelectorAll('[data-report-slot]')];
const seconds = Math.max(10, Number(stage.dataset.interval) || 60);
const title = document.querySelector('[data-tv-title]');
const position = document.querySelector('[data-tv-position]');
let current = 0;

function show(index) {
  current = index;
  slots.forEach((slot, i) => {
    slot.classList.toggle('active', i === index);
    slot.setAttribute('aria-hidden', i === index ? 'false' : 'true');
  });
  if (title) title.textContent = slots[index].dataset.reportName;
  if (position) position.textContent = `${index + 1} / ${slots.length}`;
}

show(0);
// All at once, each on its own: a slot whose first token keeps failing shows its own message
// and retries by itself, while the others play (one after the other, the first failing report
// held back every other). A TV names at most 12 reports, so that is at most 12 token requests.
for (const slot of slots) mountSlot(slot).catch(() => {});
if (slots.length > 1) setInterval(() => show((current + 1) % slots.length), seconds * 1000);
