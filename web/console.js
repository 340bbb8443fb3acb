// statusads console: the advertiser and operator UI over the same-origin JSON API.
// Plain ES2020 module without dependencies. API data reaches the DOM only as text nodes,
// attribute values or properties (never as markup).

const TOKEN_KEY = 'statusads.token';
const MICROS_PER_UNIT = 1000000n;
const CAP_ROWS = 4;
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
const MAX_VIDEO_BYTES = 30 * 1024 * 1024;
const MAX_VIDEO_SECONDS = 30;
const MIN_WIDTH = 540;
const MIN_HEIGHT = 960;
const PORTRAIT = 9 / 16;
const ASPECT_TOLERANCE = 0.02;
const DAY_MS = 86400000;

const state = {
  token: null,
  role: null,
  campaigns: [],
  editing: null, // { id, baseline } while the campaign form edits an existing campaign
  history: null, // { id } while the history box shows a campaign's changes
  previewUrl: null, // object URL of the picked creative file, revoked when replaced
};

const $ = (id) => document.getElementById(id);

// --- errors

/** An API failure: HTTP status plus the body's {"error": {code, message}}. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A problem found in the browser, explained in plain words (no API code to show). */
class UserError extends Error {}

function describeError(err) {
  return err instanceof ApiError ? `${err.message} (${err.code})` : err.message;
}

function showError(el, err) {
  el.textContent = describeError(err);
}

/** Runs a UI action: disables its button meanwhile and shows any failure in errorEl. */
async function runAction(button, errorEl, action) {
  errorEl.textContent = '';
  if (button) button.disabled = true;
  try {
    await action();
  } catch (err) {
    showError(errorEl, err);
  } finally {
    if (button) button.disabled = false;
  }
}

/** Polite announcement; a repeated message is re-set on the next frame so it is read again. */
function announce(message) {
  const region = $('status');
  if (region.textContent !== message) {
    region.textContent = message;
    return;
  }
  region.textContent = '';
  requestAnimationFrame(() => { region.textContent = message; });
}

// --- HTTP

async function request(method, path, { json, formData, accept } = {}) {
  const token = state.token;
  const headers = { Authorization: `Bearer ${token}` };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (formData) {
    body = formData; // the browser writes the multipart Content-Type with its boundary
  }
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network_error', 'The service could not be reached. Check the connection and try again.');
  }
  // A sign-out (or another sign-in) happened meanwhile: this answer belongs to nobody now.
  if (state.token !== token) throw new ApiError(0, 'signed_out', 'Signed out before the answer arrived.');
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function api(method, path, options) {
  const text = await (await request(method, path, options)).text();
  return text ? JSON.parse(text) : null;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (e.g. a proxy's error page): fall back to the status line below.
  }
  const detail = body?.error;
  if (response.status === 401 && state.role) endSession('Your key is no longer valid. Please sign in again.');
  return new ApiError(
    response.status,
    detail?.code || `http_${response.status}`,
    detail?.message || response.statusText || 'Request failed',
  );
}

const campaignPath = (id) => `/v1/campaigns/${encodeURIComponent(id)}`;

// --- DOM helpers

/** Creates an element; props are DOM properties, or attributes when no such property exists. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child != null));
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const badge = (status) => h('span', { className: `badge badge-${status}` }, status);

// --- formatting

/** Decimal units ("2.5", "2,50") → integer micros, parsed as text so no float error creeps in. */
function parseMicros(text, label) {
  const normalized = text.trim().replace(/^(\d*),(\d+)$/, '$1.$2');
  const match = /^(\d*)(?:\.(\d*))?$/.exec(normalized);
  const fraction = match?.[2] ?? '';
  if (!match || match[1] + fraction === '') throw new UserError(`${label}: enter an amount like 12.50.`);
  if (fraction.length > 6) throw new UserError(`${label}: use at most 6 decimal places.`);
  const micros = BigInt(match[1] || '0') * MICROS_PER_UNIT + BigInt(fraction.padEnd(6, '0'));
  if (micros > BigInt(Number.MAX_SAFE_INTEGER)) throw new UserError(`${label}: the amount is too large.`);
  return Number(micros);
}

/** Integer micros → units with 2 to 6 decimals; integer arithmetic keeps it exact. */
function formatMicros(micros) {
  if (micros == null) return '—';
  const abs = Math.abs(micros);
  const rest = abs % 1e6;
  const whole = ((abs - rest) / 1e6).toLocaleString('en-US');
  const fraction = String(rest).padStart(6, '0').replace(/0+$/, '').padEnd(2, '0');
  return `${micros < 0 ? '-' : ''}${whole}.${fraction}`;
}

/** Units for a form field: like formatMicros but without thousands separators. */
const plainUnits = (micros) => formatMicros(micros).replace(/,/g, '');

const count = (n) => (n ?? 0).toLocaleString('en-US');

function formatBytes(bytes) {
  return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

const pad = (n) => String(n).padStart(2, '0');
const utcDay = (date) => date.toISOString().slice(0, 10);

/** datetime-local value (the user's wall clock) → RFC 3339 UTC, or null when empty. */
function localToRfc3339(value, label) {
  if (!value) return null;
  const date = new Date(value); // a date-time without offset parses as local time
  if (Number.isNaN(date.getTime())) throw new UserError(`${label}: enter a valid date and time.`);
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** RFC 3339 → datetime-local value in the browser's time zone. */
function rfc3339ToLocal(value) {
  if (!value) return '';
  const d = new Date(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// --- session

async function signIn(event) {
  event.preventDefault();
  const token = $('token-input').value.trim();
  await runAction($('sign-in'), $('sign-in-error'), async () => {
    if (!token) throw new UserError('Enter your API key or operator token.');
    // Header values must be printable ASCII; anything else cannot be a key we issued.
    if (/[^\x21-\x7e]/.test(token)) throw new UserError('Unknown key');
    await startSession(token);
  });
}

async function startSession(token) {
  state.token = token;
  try {
    const { role, data } = await detectRole();
    sessionStorage.setItem(TOKEN_KEY, token);
    enterRole(role, data);
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw signInError(err);
  }
}

/** The campaign list answers 200 only to advertisers; a 403 there may be the operator token. */
async function detectRole() {
  try {
    return { role: 'advertiser', data: await api('GET', '/v1/campaigns') };
  } catch (err) {
    if (err.status !== 403) throw err;
  }
  return { role: 'operator', data: await api('GET', '/v1/moderation/creatives?status=pending') };
}

function signInError(err) {
  if (err.status === 401) return new UserError('Unknown key');
  if (err.status === 403) return new UserError('This token cannot use the console: it is neither an advertiser key nor the operator token.');
  return err;
}

function enterRole(role, data) {
  clearAccountData();
  state.role = role;
  $('role').textContent = role;
  $('session').hidden = false;
  $('signin-view').hidden = true;
  $(`${role}-view`).hidden = false;
  if (role === 'advertiser') {
    renderCampaigns(data.campaigns);
    setReportDefaults();
    $('invoice-month').value = new Date().toISOString().slice(0, 7);
    showPanel('panel-campaigns');
  } else {
    renderModeration(data.creatives);
    showPanel('panel-moderation', false);
  }
  announce(`Signed in as ${role}.`);
  $('main').focus();
}

function endSession(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, role: null, campaigns: [], editing: null, history: null });
  clearAccountData();
  $('session').hidden = true;
  $('advertiser-view').hidden = true;
  $('operator-view').hidden = true;
  $('signin-view').hidden = false;
  $('sign-in-error').textContent = message ?? '';
  announce(message ?? 'Signed out.');
  $('token-input').focus();
}

/** Leaves nothing of the previous account in the page, hidden or not. */
function clearAccountData() {
  for (const id of ['campaign-list', 'creative-list', 'moderation-list', 'advertiser-list', 'creative-campaign', 'report-campaign']) {
    $(id).replaceChildren();
  }
  for (const part of document.querySelectorAll('#report-table tbody, #report-table tfoot, #invoice-table tbody, #invoice-table tfoot')) {
    part.replaceChildren();
  }
  for (const form of document.querySelectorAll('form')) form.reset();
  for (const error of document.querySelectorAll('.error')) error.textContent = '';
  resetCampaignForm();
  hideHistory();
  resetCreativeForm();
  drawChart([]);
  hideApiKey();
  $('invoice-summary').textContent = '';
}

function resumeSession() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) runAction($('sign-in'), $('sign-in-error'), () => startSession(token));
}

// --- section navigation

const PANEL_LOADERS = {
  'panel-creatives': () => runAction(null, $('creative-list-error'), loadCreatives),
  'panel-reports': () => $('report-campaign').value && runAction(null, $('report-error'), loadReport),
  'panel-moderation': () => runAction(null, $('moderation-error'), loadModeration),
  'panel-advertisers': () => runAction(null, $('advertiser-list-error'), loadAdvertisers),
};

/** Shows one panel of its view; `load` refreshes its data (skipped when the caller has it). */
function showPanel(panelId, load = true) {
  const nav = document.querySelector(`button[data-panel="${panelId}"]`).closest('nav');
  for (const tab of nav.querySelectorAll('button[data-panel]')) {
    const current = tab.dataset.panel === panelId;
    if (current) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
    $(tab.dataset.panel).hidden = !current;
  }
  if (load) PANEL_LOADERS[panelId]?.();
}

function onNavClick(event) {
  const tab = event.target.closest('button[data-panel]');
  if (tab) showPanel(tab.dataset.panel);
}

// --- campaigns

async function loadCampaigns() {
  renderCampaigns((await api('GET', '/v1/campaigns')).campaigns);
}

/** Reloads the list, and the history on show (a change just made is its newest entry). */
async function refreshCampaigns() {
  await runAction(null, $('campaign-list-error'), loadCampaigns);
  if (state.history) await runAction(null, $('history-error'), loadHistory);
}

function renderCampaigns(campaigns) {
  state.campaigns = campaigns;
  $('campaign-list').replaceChildren(...campaigns.map(campaignRow));
  $('campaign-empty').hidden = campaigns.length > 0;
  fillCampaignSelect($('creative-campaign'), campaigns);
  fillCampaignSelect($('report-campaign'), campaigns);
}

/** Rebuilds a campaign <select>, keeping the current choice while it still exists. */
function fillCampaignSelect(select, campaigns) {
  const previous = select.value;
  select.replaceChildren(...campaigns.map((c) => h('option', { value: c.id }, `${c.name} (${c.status})`)));
  if (campaigns.some((c) => c.id === previous)) select.value = previous;
}

function campaignRow(c) {
  const budget = c.budget ? `${formatMicros(c.budget.total_micros)} / ${formatMicros(c.budget.daily_micros)}` : 'none';
  return h('tr', { dataset: { campaignId: c.id } },
    h('th', { scope: 'row' }, c.name),
    h('td', {}, badge(c.status)),
    h('td', {}, c.priority),
    h('td', { className: 'num' }, formatMicros(c.bid_cpm_micros)),
    h('td', { className: 'num' }, budget),
    h('td', { className: 'num' }, `${formatMicros(c.spend?.total_micros)} / ${formatMicros(c.spend?.today_micros)}`),
    h('td', {}, campaignActions(c)));
}

function campaignActions(c) {
  const actions = h('div', { className: 'row-actions' });
  const history = rowButton('History', c, 'history secondary', (button) => showHistory(c, button));
  if (c.status === 'archived') {
    actions.append(history);
    return actions;
  }
  const toggle = c.status === 'paused'
    ? rowButton('Resume', c, 'resume secondary', (button) => setCampaignStatus(c, 'active', button))
    : rowButton('Pause', c, 'pause secondary', (button) => setCampaignStatus(c, 'paused', button));
  actions.append(
    rowButton('Edit', c, 'edit secondary', () => editCampaign(c)),
    toggle,
    history,
    rowButton('Archive', c, 'archive danger', (button) => archiveCampaign(c, button)),
  );
  return actions;
}

/** A row button whose accessible name also says which campaign it acts on. */
function rowButton(label, campaign, className, onClick) {
  const button = h('button', { type: 'button', className: `small ${className}`, 'aria-label': `${label} ${campaign.name}` }, label);
  button.addEventListener('click', () => onClick(button));
  return button;
}

function setCampaignStatus(c, status, button) {
  runAction(button, $('campaign-list-error'), async () => {
    await api('PATCH', campaignPath(c.id), { json: { status } });
    announce(`Campaign “${c.name}” ${status === 'paused' ? 'paused' : 'resumed'}.`);
    await refreshCampaigns();
  });
}

function archiveCampaign(c, button) {
  if (!window.confirm(`Archive “${c.name}”? It stops serving; its spend history stays.`)) return;
  runAction(button, $('campaign-list-error'), async () => {
    await api('DELETE', campaignPath(c.id));
    if (state.editing?.id === c.id) resetCampaignForm();
    announce(`Campaign “${c.name}” archived.`);
    await refreshCampaigns();
  });
}

// --- campaign form

const LIST_FIELDS = ['countries', 'languages', 'os', 'cities', 'interests'];
const fieldValue = (id) => $(id).value.trim();
const splitList = (text) => text.split(',').map((item) => item.trim()).filter(Boolean);

/** The form as an API body; fields left empty become null (the server's default). */
function readCampaignForm() {
  const bid = fieldValue('campaign-bid');
  const chatText = fieldValue('campaign-chat-text');
  return {
    name: fieldValue('campaign-name'),
    start_at: localToRfc3339(fieldValue('campaign-start'), 'Start'),
    end_at: localToRfc3339(fieldValue('campaign-end'), 'End'),
    bid_cpm_micros: bid ? parseMicros(bid, 'Bid CPM') : 0, // house campaigns bid 0
    budget: readBudget(),
    pacing: $('campaign-pacing').value,
    priority: $('campaign-priority').value,
    targeting: readTargeting(),
    frequency_caps: readCaps(),
    advertiser_caps: $('campaign-advertiser-caps').checked,
    objective: $('campaign-objective').value,
    chat: chatText ? { prefilled_text: chatText } : null,
  };
}

function readBudget() {
  const total = fieldValue('campaign-budget-total');
  const daily = fieldValue('campaign-budget-daily');
  if (!total && !daily) return null;
  if (!total) throw new UserError('Total budget: required when a daily budget is set.');
  const budget = { total_micros: parseMicros(total, 'Total budget') };
  if (daily) budget.daily_micros = parseMicros(daily, 'Daily budget');
  return budget;
}

function readWholeNumber(id, label) {
  const text = fieldValue(id);
  if (!text) return null;
  if (!/^\d+$/.test(text)) throw new UserError(`${label}: enter a whole number.`);
  return Number(text);
}

function readTargeting() {
  const targeting = {};
  for (const field of LIST_FIELDS) targeting[field] = splitList($(`campaign-${field}`).value);
  const min = readWholeNumber('campaign-age-min', 'Minimum age');
  const max = readWholeNumber('campaign-age-max', 'Maximum age');
  if ((min === null) !== (max === null)) throw new UserError('Age: enter both a minimum and a maximum, or neither.');
  if (min !== null) targeting.age = { min, max };
  return targeting;
}

function readCaps() {
  const caps = [];
  for (let i = 0; i < CAP_ROWS; i += 1) {
    const max = readWholeNumber(`cap-max-${i}`, `Cap ${i + 1} max renders`);
    const perSeconds = readWholeNumber(`cap-per-${i}`, `Cap ${i + 1} seconds`);
    if (max === null && perSeconds === null) continue;
    if (max === null || perSeconds === null) throw new UserError(`Frequency cap ${i + 1}: enter both the maximum and the window in seconds.`);
    caps.push({ max, per_seconds: perSeconds });
  }
  return caps;
}

function fillCampaignForm(c) {
  const set = (id, value) => { $(id).value = value ?? ''; };
  set('campaign-name', c.name);
  set('campaign-start', rfc3339ToLocal(c.start_at));
  set('campaign-end', rfc3339ToLocal(c.end_at));
  set('campaign-bid', plainUnits(c.bid_cpm_micros));
  set('campaign-budget-total', c.budget ? plainUnits(c.budget.total_micros) : '');
  set('campaign-budget-daily', c.budget?.daily_micros != null ? plainUnits(c.budget.daily_micros) : '');
  set('campaign-pacing', c.pacing);
  set('campaign-priority', c.priority);
  set('campaign-objective', c.objective);
  for (const field of LIST_FIELDS) set(`campaign-${field}`, (c.targeting?.[field] ?? []).join(', '));
  set('campaign-age-min', c.targeting?.age?.min);
  set('campaign-age-max', c.targeting?.age?.max);
  for (let i = 0; i < CAP_ROWS; i += 1) {
    set(`cap-max-${i}`, c.frequency_caps?.[i]?.max);
    set(`cap-per-${i}`, c.frequency_caps?.[i]?.per_seconds);
  }
  $('campaign-advertiser-caps').checked = Boolean(c.advertiser_caps);
  set('campaign-chat-text', c.chat?.prefilled_text);
}

function editCampaign(c) {
  resetCampaignForm();
  fillCampaignForm(c);
  // The baseline is read back from the form so that unchanged fields compare equal
  // whatever the server's spelling (minute precision, empty lists, null daily budget).
  state.editing = { id: c.id, baseline: readCampaignForm() };
  $('campaign-form-title').textContent = `Edit “${c.name}”`;
  $('campaign-submit').textContent = 'Save changes';
  $('campaign-cancel').hidden = false;
  $('campaign-form').scrollIntoView({ block: 'start' });
  $('campaign-name').focus();
}

function resetCampaignForm() {
  $('campaign-form').reset();
  state.editing = null;
  $('form-error').textContent = '';
  $('campaign-form-title').textContent = 'New campaign';
  $('campaign-submit').textContent = 'Create campaign';
  $('campaign-cancel').hidden = true;
}

function cancelEdit() {
  resetCampaignForm();
  announce('Editing cancelled.');
  $('campaign-name').focus();
}

async function submitCampaign(event) {
  event.preventDefault();
  await runAction($('campaign-submit'), $('form-error'), async () => {
    const values = readCampaignForm();
    await (state.editing ? updateCampaign(values) : createCampaign(values));
  });
}

async function createCampaign(values) {
  // Null fields are left out so the server applies its defaults (start now, no end, ...).
  const body = Object.fromEntries(Object.entries(values).filter(([, value]) => value !== null));
  const created = await api('POST', '/v1/campaigns', { json: body });
  resetCampaignForm();
  announce(`Campaign “${created.name}” created.`);
  await refreshCampaigns();
  // Uploading a creative is the usual next step: preselect the new campaign there.
  if (state.campaigns.some((c) => c.id === created.id)) {
    $('creative-campaign').value = created.id;
    $('report-campaign').value = created.id;
  }
}

/** PATCH carries only the fields that differ from the form as it was when editing began. */
async function updateCampaign(values) {
  const { id, baseline } = state.editing;
  const changes = Object.fromEntries(
    Object.entries(values).filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(baseline[key])),
  );
  if (Object.keys(changes).length === 0) {
    announce('Nothing to save: no field changed.');
    return;
  }
  const updated = await api('PATCH', campaignPath(id), { json: changes });
  resetCampaignForm();
  announce(`Campaign “${updated.name}” saved.`);
  await refreshCampaigns();
}

// --- campaign history: GET /v1/campaigns/{id}/history answers oldest first; shown newest first

/** Field labels as in the campaign form, in the form's order (unknown fields follow, by name). */
const HISTORY_FIELDS = {
  name: 'Name',
  status: 'Status',
  objective: 'Objective',
  priority: 'Priority',
  pacing: 'Pacing',
  start_at: 'Start',
  end_at: 'End',
  bid_cpm_micros: 'Bid CPM',
  budget: 'Budget',
  targeting: 'Targeting',
  frequency_caps: 'Frequency caps',
  advertiser_caps: 'Caps across all campaigns',
  chat: 'Click-to-chat',
  suppress_after: 'Suppress after',
};
const HISTORY_ORDER = Object.keys(HISTORY_FIELDS);

const fieldLabel = (field) => HISTORY_FIELDS[field] ?? field.replace(/_/g, ' ');

function byFormOrder(a, b) {
  const rank = (field) => (HISTORY_ORDER.includes(field) ? HISTORY_ORDER.indexOf(field) : HISTORY_ORDER.length);
  return rank(a) - rank(b) || a.localeCompare(b);
}

/** RFC 3339 → "YYYY-MM-DD HH:MM:SS" in the browser's time zone. */
function formatTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return `${rfc3339ToLocal(value).replace('T', ' ')}:${pad(date.getSeconds())}`;
}

const isEmpty = (value) => value == null || (Array.isArray(value) && value.length === 0);

/** A JSON value on one line; members that are empty are left out and money members
 *  (`*_micros`) are in units, e.g. {total: 100.00, daily: 10.00}. */
function compactJson(value) {
  if (Array.isArray(value)) return `[${value.map(compactJson).join(', ')}]`;
  if (value && typeof value === 'object') {
    const members = Object.entries(value)
      .filter(([, member]) => !isEmpty(member))
      .map(([key, member]) => (key.endsWith('_micros') && typeof member === 'number'
        ? `${key.slice(0, -'_micros'.length)}: ${formatMicros(member)}`
        : `${key}: ${compactJson(member)}`));
    return `{${members.join(', ')}}`;
  }
  return JSON.stringify(value);
}

/** One field's value as text; the caller puts it in a text node. */
function historyValue(field, value) {
  if (value == null) return 'none';
  if (typeof value === 'number' && field.endsWith('_micros')) return formatMicros(value);
  if (typeof value === 'string' && field.endsWith('_at')) return formatTime(value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'object') return compactJson(value);
  return String(value);
}

/** Worth listing among a new campaign's values: not empty, not off, not an all-empty object. */
const initialValue = (value) => !isEmpty(value) && value !== false && compactJson(value) !== '{}';

/** One change; `created`: the first change, the campaign's creation (every field from null). */
function historyEntry(change, created) {
  const fields = Object.keys(change.fields).sort(byFormOrder);
  const what = created ? 'created' : `changed ${fields.length} ${fields.length === 1 ? 'field' : 'fields'}`;
  const item = h('li', { dataset: { at: change.at, actor: change.actor, kind: created ? 'created' : 'changed' } },
    h('p', { className: 'history-head' },
      h('time', { dateTime: change.at }, formatTime(change.at)), ' · ',
      h('span', { className: 'history-actor' }, change.actor), ' ',
      h('span', { className: 'history-what' }, what)));
  if (created) {
    const values = fields.filter((field) => initialValue(change.fields[field].to)).map((field) =>
      h('span', { dataset: { field } }, `${fieldLabel(field)}: `,
        h('span', { className: 'history-to' }, historyValue(field, change.fields[field].to))));
    item.append(h('p', { className: 'history-summary' }, ...values.flatMap((value, i) => (i ? ['; ', value] : [value]))));
  } else {
    item.append(h('ul', { className: 'history-fields' }, ...fields.map((field) => {
      const { from, to } = change.fields[field];
      return h('li', { dataset: { field } }, `${fieldLabel(field)}: `,
        h('span', { className: 'history-from' }, historyValue(field, from)), ' → ',
        h('span', { className: 'history-to' }, historyValue(field, to)));
    })));
  }
  return item;
}

async function loadHistory() {
  const open = state.history;
  if (!open) return;
  const { changes } = await api('GET', `${campaignPath(open.id)}/history`);
  if (state.history !== open) return; // closed, or another campaign's history opened meanwhile
  $('history-title').textContent = `History of “${campaignName(open.id)}”`;
  const entries = changes.map((change, i) => historyEntry(change, i === 0));
  $('history-list').replaceChildren(...entries.reverse());
  $('history-empty').hidden = changes.length > 0;
  return changes.length;
}

function showHistory(c, button) {
  state.history = { id: c.id };
  $('history-title').textContent = `History of “${c.name}”`;
  $('history-list').replaceChildren();
  $('history-empty').hidden = true;
  $('history-box').hidden = false;
  $('history-box').scrollIntoView({ block: 'start' });
  $('history-title').focus();
  runAction(button, $('history-error'), async () => {
    const shown = await loadHistory();
    if (shown !== undefined) announce(`History of “${c.name}”: ${shown} ${shown === 1 ? 'change' : 'changes'}, newest first.`);
  });
}

function hideHistory() {
  state.history = null;
  $('history-box').hidden = true;
  $('history-list').replaceChildren();
  $('history-error').textContent = '';
}

function closeHistory() {
  const id = state.history?.id;
  hideHistory();
  announce('History closed.');
  // Back to the row's History button (the one that opened it), or the list when it is gone.
  const row = [...$('campaign-list').rows].find((tr) => tr.dataset.campaignId === id);
  (row?.querySelector('button.history') ?? $('campaign-refresh')).focus();
}

// --- creatives

async function loadCreatives() {
  const id = $('creative-campaign').value;
  if (!id) {
    $('creative-list').replaceChildren();
    $('creative-empty').hidden = false;
    return;
  }
  const { creatives } = await api('GET', `${campaignPath(id)}/creatives`);
  if (id !== $('creative-campaign').value) return; // another campaign was picked meanwhile
  $('creative-list').replaceChildren(...creatives.map(creativeItem));
  $('creative-empty').hidden = creatives.length > 0;
}

function assetElement(creative) {
  const { url } = creative.asset;
  if (creative.format === 'video') {
    return h('video', { className: 'thumb', src: url, controls: true, muted: true, preload: 'metadata', playsInline: true, 'aria-label': `Video for “${creative.headline}”` });
  }
  return h('img', { className: 'thumb', src: url, alt: `Image for “${creative.headline}”`, loading: 'lazy' });
}

const assetSummary = (c) => `${c.format}, ${c.asset.width}×${c.asset.height} px, ${formatBytes(c.asset.bytes)}`;

function creativeItem(c) {
  return h('li', { dataset: { creativeId: c.id } },
    assetElement(c),
    h('h4', {}, c.headline),
    c.body ? h('p', {}, c.body) : null,
    h('p', {}, badge(c.status), ' ', h('span', { className: 'meta' }, assetSummary(c))),
    c.reject_reason ? h('p', { className: 'reason' }, `Rejected: ${c.reject_reason}`) : null);
}

function creativeMeta() {
  const meta = { headline: fieldValue('creative-headline'), body: fieldValue('creative-body') };
  const cta = fieldValue('creative-cta');
  if (cta) meta.cta_label = cta; // absent: the server's default label
  return meta;
}

async function submitCreative(event) {
  event.preventDefault();
  await runAction($('creative-submit'), $('creative-error'), async () => {
    const campaignId = $('creative-campaign').value;
    const file = $('creative-file').files[0];
    if (!campaignId) throw new UserError('Create a campaign first, then upload its creatives.');
    if (!file) throw new UserError('Choose an image or video file.');
    const form = new FormData();
    form.append('file', file);
    form.append('meta', JSON.stringify(creativeMeta()));
    const created = await api('POST', `${campaignPath(campaignId)}/creatives`, { formData: form });
    resetCreativeForm();
    announce(`Creative “${created.headline}” uploaded; it is waiting for review.`);
    await runAction(null, $('creative-list-error'), loadCreatives);
  });
}

function resetCreativeForm() {
  $('creative-form').reset();
  clearPreview();
  updatePreviewText();
}

// --- live preview

function updatePreviewText() {
  const headline = $('creative-headline').value;
  const body = $('creative-body').value;
  $('preview-headline').textContent = headline || 'Your headline';
  $('preview-body').textContent = body || 'Your message to people watching statuses.';
  $('preview-cta').textContent = fieldValue('creative-cta') || 'Learn more';
  // Spread counts code points, as the server does, so an emoji counts once.
  $('headline-count').textContent = `${[...headline].length}/40`;
  $('body-count').textContent = `${[...body].length}/125`;
}

function clearPreview() {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $('preview-media').replaceWith(h('img', { id: 'preview-media', alt: '', hidden: true }));
  $('preview-empty').hidden = false;
  $('creative-hints').replaceChildren();
}

function onCreativeFileChange() {
  const file = $('creative-file').files[0];
  clearPreview();
  if (!file) return;
  state.previewUrl = URL.createObjectURL(file);
  const media = file.type.startsWith('video/') ? previewVideo(file) : previewImage(file);
  $('preview-media').replaceWith(media);
  $('preview-empty').hidden = true;
  setHints(media, describeFile(file));
}

function previewImage(file) {
  const img = h('img', { id: 'preview-media', alt: 'Preview of the chosen image' });
  img.addEventListener('load', () => setHints(img, [...describeFile(file), ...describeMedia(img.naturalWidth, img.naturalHeight)]));
  img.addEventListener('error', () => setHints(img, [...describeFile(file), warning('this browser cannot display the file; the server will check it.')]));
  img.src = state.previewUrl;
  return img;
}

function previewVideo(file) {
  const still = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  const video = h('video', { id: 'preview-media', muted: true, loop: true, autoplay: !still, playsInline: true, preload: 'metadata', 'aria-label': 'Preview of the chosen video' });
  video.addEventListener('loadedmetadata', () => setHints(video, [...describeFile(file), ...describeMedia(video.videoWidth, video.videoHeight, video.duration)]));
  video.src = state.previewUrl;
  return video;
}

const note = (text) => h('span', {}, text);
const warning = (text) => h('span', { className: 'warn' }, `Warning: ${text}`);

/** Shows hints about `media` unless another file has replaced it in the preview meanwhile. */
function setHints(media, notes) {
  if ($('preview-media') === media) $('creative-hints').replaceChildren(...notes);
}

// These checks mirror the server's rules to flag problems early; the server still decides.
function describeFile(file) {
  const isVideo = file.type === 'video/mp4';
  const notes = [note(`${file.name}: ${formatBytes(file.size)}`)];
  if (!isVideo && !IMAGE_TYPES.includes(file.type)) notes.push(warning('not a JPEG, PNG, WebP or MP4 file.'));
  const limit = isVideo ? MAX_VIDEO_BYTES : MAX_IMAGE_BYTES;
  if (file.size > limit) notes.push(warning(`larger than the ${formatBytes(limit)} limit.`));
  return notes;
}

function describeMedia(width, height, seconds) {
  const duration = seconds ? `, ${seconds.toFixed(1)} s` : '';
  const notes = [note(`${width}×${height} px${duration}`)];
  if (Math.abs(width / height - PORTRAIT) / PORTRAIT > ASPECT_TOLERANCE) notes.push(warning('not portrait 9:16.'));
  if (width < MIN_WIDTH || height < MIN_HEIGHT) notes.push(warning(`smaller than ${MIN_WIDTH}×${MIN_HEIGHT} px.`));
  if (seconds > MAX_VIDEO_SECONDS) notes.push(warning(`longer than ${MAX_VIDEO_SECONDS} seconds.`));
  return notes;
}

// --- reports

const REPORT_COUNTERS = ['served', 'rendered', 'viewed', 'clicks', 'hides', 'reports', 'conversations', 'messages'];

function setReportDefaults() {
  const today = new Date();
  $('report-to').value = utcDay(today);
  $('report-from').value = utcDay(new Date(today.getTime() - 29 * DAY_MS));
}

async function loadReport() {
  const id = $('report-campaign').value;
  if (!id) throw new UserError('Create a campaign first: reports are per campaign.');
  const query = new URLSearchParams();
  if ($('report-from').value) query.set('from', $('report-from').value);
  if ($('report-to').value) query.set('to', $('report-to').value);
  renderReport(await api('GET', `/v1/reports/campaigns/${encodeURIComponent(id)}?${query}`));
  renderDelivery(await api('GET', `/v1/campaigns/${encodeURIComponent(id)}/delivery?${query}`));
}

// --- delivery: GET /v1/campaigns/{id}/delivery, one bar per outcome of the sampled decisions

const DELIVERY_LABELS = {
  outbid: 'Lost: outbid', frequency_cap: 'Lost: frequency cap', ad_load: 'Lost: ad load',
  pacing: 'Lost: pacing', budget: 'Lost: budget', hidden: 'Lost: hidden by user',
  advertiser_once: 'Lost: own campaign chosen', targeting: 'Not eligible: targeting',
  schedule: 'Not eligible: schedule', no_approved_creative: 'Not eligible: no approved creative',
  status: 'Not eligible: status',
};

function renderDelivery(delivery) {
  $('delivery-summary').textContent = `Sampled at ${delivery.sample_rate}: ${delivery.summary}.`;
  const bars = [{ key: 'won', label: 'Won', value: delivery.won }]
    .concat(Object.entries(delivery.lost).map(([key, value]) => ({ key, label: DELIVERY_LABELS[key] ?? key, value })))
    .concat(Object.entries(delivery.not_eligible).map(([key, value]) => ({ key, label: DELIVERY_LABELS[key] ?? key, value })))
    .filter((bar) => bar.value > 0);
  const chart = $('delivery-chart');
  chart.replaceChildren($('delivery-chart-title'), $('delivery-chart-desc'));
  $('delivery-chart-desc').textContent = bars.length
    ? bars.map((bar) => `${bar.label}: ${count(bar.value)}`).join(', ') + '.'
    : 'No sampled decisions in this period.';
  const left = 260;
  const width = 720 - left - 80;
  const top = Math.max(1, ...bars.map((bar) => bar.value));
  const step = Math.min(40, 280 / Math.max(1, bars.length));
  bars.forEach((bar, i) => {
    const y = 10 + i * step;
    const length = Math.max(2, (bar.value / top) * width);
    chart.append(svg('g', { 'data-outcome': bar.key, 'data-value': String(bar.value) },
      svg('text', { x: left - 10, y: y + step * 0.6, 'text-anchor': 'end' }, bar.label),
      svg('rect', { x: left, y, width: length, height: step * 0.7, rx: 3, fill: bar.key === 'won' ? '#15803d' : '#1d4ed8' },
        svg('title', {}, `${bar.label}: ${count(bar.value)}`)),
      svg('text', { x: left + length + 8, y: y + step * 0.6 }, count(bar.value))));
  });
}

// --- estimate: POST /v1/forecast with the campaign form as it is (nothing saved)

async function estimateCampaign() {
  const values = readCampaignForm();
  const forecast = await api('POST', '/v1/forecast', { json: values });
  const basis = forecast.basis.sampled_requests
    ? `the ${count(forecast.basis.sampled_requests)} sampled requests from ${forecast.basis.from} to ${forecast.basis.to}`
    : 'no sampled requests yet';
  $('campaign-estimate-result').textContent = `Over ${basis}: about ${count(forecast.impressions)} impressions`
    + ` reaching ${count(forecast.reach)} sampled users, spending ${formatMicros(forecast.spend_micros)},`
    + ` against ${count(forecast.competing_campaigns)} competing campaigns.`;
}

function renderReport({ rows, totals }) {
  const table = $('report-table');
  const body = rows.length
    ? rows.map((row) => reportRow(row.date, row))
    : [h('tr', {}, h('td', { colSpan: 12, className: 'empty' }, 'No activity in this period.'))];
  table.tBodies[0].replaceChildren(...body);
  table.tFoot.replaceChildren(reportRow('Total', totals));
  drawChart(rows);
  drawFunnel(totals);
}

function reportRow(label, counters) {
  return h('tr', {},
    h('th', { scope: 'row' }, label),
    ...REPORT_COUNTERS.map((key) => h('td', { className: 'num' }, count(counters[key]))),
    h('td', { className: 'num' }, formatMicros(counters.spend_micros)),
    h('td', { className: 'num' }, formatMicros(counters.message_charges_micros ?? 0)),
    h('td', { className: 'num' }, formatMicros(counters.cost_per_conversation_micros ?? 0)));
}

// --- funnel: from the period's totals, each stage a bar scaled to renders

const FUNNEL = [
  { key: 'rendered', label: 'Rendered' },
  { key: 'clicks', label: 'Clicks' },
  { key: 'conversations', label: 'Conversations' },
  { key: 'messages', label: 'Messages' },
];

function drawFunnel(totals) {
  const chart = $('funnel-chart');
  chart.replaceChildren($('funnel-chart-title'), $('funnel-chart-desc'));
  const cost = totals.cost_per_conversation_micros ?? 0;
  const charges = totals.message_charges_micros ?? 0;
  $('funnel-chart-desc').textContent = FUNNEL.map((s) => `${count(totals[s.key] ?? 0)} ${s.label.toLowerCase()}`).join(', ')
    + `; cost per conversation ${formatMicros(cost)}; message charges ${formatMicros(charges)}.`;
  const left = 150;
  const width = 720 - left - 140;
  const top = totals.rendered || 1;
  FUNNEL.forEach((stage, i) => {
    const value = totals[stage.key] ?? 0;
    const previous = i === 0 ? null : (totals[FUNNEL[i - 1].key] ?? 0);
    const y = 24 + i * 44;
    const bar = Math.max(2, (Math.min(value, top) / top) * width);
    const share = previous ? ` (${((100 * value) / previous).toFixed(1)}%)` : '';
    chart.append(svg('g', { 'data-stage': stage.key, 'data-value': String(value) },
      svg('text', { x: left - 10, y: y + 20, 'text-anchor': 'end' }, stage.label),
      svg('rect', { x: left, y, width: bar, height: 30, rx: 3, fill: '#1d4ed8', opacity: String(1 - i * 0.18) },
        svg('title', {}, `${stage.label}: ${count(value)}${share}`)),
      svg('text', { x: left + bar + 8, y: y + 20 }, `${count(value)}${share}`)));
  });
  chart.append(svg('g', { 'data-stage': 'cost_per_conversation', 'data-value': String(cost) },
    svg('text', { x: left, y: 24 + FUNNEL.length * 44 + 20 },
      `Cost per conversation: ${formatMicros(cost)} · message charges: ${formatMicros(charges)}`)));
}

// --- chart

const CHART = { width: 720, height: 300, left: 64, right: 72, top: 56, bottom: 36 };
const TICKS = 4;
const SERIES = [
  { key: 'rendered', label: 'Rendered', color: '#1d4ed8', dash: 'none', axis: 'left' },
  { key: 'clicks', label: 'Clicks', color: '#c2410c', dash: '2 4', axis: 'left' },
  { key: 'spend_micros', label: 'Spend', color: '#15803d', dash: '8 5', axis: 'right' },
];

/** A readable tick step: 1, 2 or 5 × 10^n, at least `raw` (raw ≥ 1). */
function niceStep(raw) {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((factor) => factor * magnitude).find((step) => step >= raw);
}

/** Redraws the chart; counts use the left axis and spend its own right axis. */
function drawChart(rows) {
  const chart = $('report-chart');
  chart.replaceChildren($('report-chart-title'), $('report-chart-desc'));
  $('report-chart-desc').textContent = chartSummary(rows);
  if (rows.length === 0) {
    chart.append(svg('text', { x: CHART.width / 2, y: CHART.height / 2, 'text-anchor': 'middle' }, 'No data to chart yet.'));
    return;
  }
  const plot = { x0: CHART.left, x1: CHART.width - CHART.right, y0: CHART.height - CHART.bottom, y1: CHART.top };
  const maxOf = (key) => Math.max(...rows.map((row) => row[key] ?? 0));
  const steps = {
    left: niceStep(Math.max(maxOf('rendered') / TICKS, maxOf('clicks') / TICKS, 1)),
    right: niceStep(Math.max(maxOf('spend_micros') / TICKS, 10000)), // at least 0.01 per tick
  };
  const x = (i) => (rows.length === 1 ? (plot.x0 + plot.x1) / 2 : plot.x0 + (i * (plot.x1 - plot.x0)) / (rows.length - 1));
  const y = (value, axis) => plot.y0 - ((value ?? 0) / (steps[axis] * TICKS)) * (plot.y0 - plot.y1);
  chart.append(drawGrid(plot, steps), drawDates(rows, x, plot), ...SERIES.map((s) => drawSeries(s, rows, x, y)), drawLegend());
}

function drawGrid(plot, steps) {
  const group = svg('g');
  for (let i = 0; i <= TICKS; i += 1) {
    const yPos = plot.y0 - (i * (plot.y0 - plot.y1)) / TICKS;
    group.append(
      svg('line', { x1: plot.x0, x2: plot.x1, y1: yPos, y2: yPos, class: i === 0 ? 'axis' : 'grid-line' }),
      svg('text', { x: plot.x0 - 8, y: yPos + 4, 'text-anchor': 'end' }, count(steps.left * i)),
      svg('text', { x: plot.x1 + 8, y: yPos + 4 }, formatMicros(steps.right * i)),
    );
  }
  group.append(
    svg('text', { x: plot.x0 - 8, y: plot.y1 - 12, 'text-anchor': 'end' }, 'Count'),
    svg('text', { x: plot.x1 + 8, y: plot.y1 - 12 }, 'Spend'),
  );
  return group;
}

function drawDates(rows, x, plot) {
  const group = svg('g');
  const every = Math.ceil(rows.length / 7); // about seven labels whatever the range
  rows.forEach((row, i) => {
    if (i % every !== 0) return;
    group.append(svg('text', { x: x(i), y: plot.y0 + 20, 'text-anchor': 'middle' }, row.date.slice(5)));
  });
  return group;
}

function drawSeries(series, rows, x, y) {
  const format = series.axis === 'right' ? formatMicros : count;
  const points = rows.map((row, i) => [x(i), y(row[series.key], series.axis)]);
  const group = svg('g', { fill: series.color });
  group.append(svg('polyline', {
    points: points.map((p) => p.join(',')).join(' '),
    fill: 'none',
    stroke: series.color,
    'stroke-width': 2.5,
    'stroke-dasharray': series.dash,
    'stroke-linejoin': 'round',
  }));
  points.forEach(([cx, cy], i) => {
    const row = rows[i];
    group.append(svg('circle', { cx, cy, r: 3 }, svg('title', {}, `${row.date}: ${series.label} ${format(row[series.key])}`)));
  });
  return group;
}

function drawLegend() {
  const group = svg('g');
  SERIES.forEach((series, i) => {
    const x0 = CHART.left + i * 190;
    group.append(
      svg('line', { x1: x0, x2: x0 + 28, y1: 16, y2: 16, stroke: series.color, 'stroke-width': 3, 'stroke-dasharray': series.dash }),
      svg('text', { x: x0 + 36, y: 20 }, `${series.label} (${series.axis} axis)`),
    );
  });
  return group;
}

function chartSummary(rows) {
  if (rows.length === 0) return 'No report loaded.';
  const sum = (key) => rows.reduce((total, row) => total + (row[key] ?? 0), 0);
  return `${rows.length} days from ${rows[0].date} to ${rows[rows.length - 1].date}: `
    + `${count(sum('rendered'))} rendered, ${count(sum('clicks'))} clicks, spend ${formatMicros(sum('spend_micros'))}.`;
}

// --- invoices

async function submitInvoice(event) {
  event.preventDefault();
  await runAction($('invoice-download'), $('invoice-error'), async () => {
    const month = fieldValue('invoice-month');
    if (!/^\d{4}-\d{2}$/.test(month)) throw new UserError('Month: use the form YYYY-MM, e.g. 2026-11.');
    const path = `/v1/invoices/${month}`;
    const [invoice, csv] = await Promise.all([
      api('GET', path),
      request('GET', path, { accept: 'text/csv' }).then((response) => response.blob()),
    ]);
    renderInvoice(invoice);
    downloadBlob(csv, `statusads-invoice-${month}.csv`);
    announce(`Invoice ${month} downloaded.`);
  });
}

function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link); // Firefox only follows links that are in the document
  link.click();
  link.remove();
  // Revoked later because the browser may read the URL after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

const campaignName = (id) => state.campaigns.find((c) => c.id === id)?.name ?? id;

function invoiceDetail(line) {
  if (line.campaign_id) return campaignName(line.campaign_id);
  return [line.category, line.country].filter(Boolean).join(' · ');
}

function renderInvoice(invoice) {
  const table = $('invoice-table');
  const rows = invoice.lines.length
    ? invoice.lines.map((line) => h('tr', {},
      h('td', {}, line.kind),
      h('td', {}, invoiceDetail(line)),
      h('td', { className: 'num' }, count(line.quantity)),
      h('td', { className: 'num' }, formatMicros(line.amount_micros))))
    : [h('tr', {}, h('td', { colSpan: 4, className: 'empty' }, 'Nothing billed this month.'))];
  table.tBodies[0].replaceChildren(...rows);
  table.tFoot.replaceChildren(h('tr', {},
    h('th', { scope: 'row', colSpan: 3 }, `Total (${invoice.currency})`),
    h('td', { className: 'num' }, formatMicros(invoice.total_micros))));
  $('invoice-summary').textContent = `Invoice ${invoice.month}, amounts in ${invoice.currency}.`;
}

// --- moderation (operator)

async function loadModeration() {
  renderModeration((await api('GET', '/v1/moderation/creatives?status=pending')).creatives);
}

function renderModeration(creatives) {
  $('moderation-list').replaceChildren(...creatives.map(moderationItem));
  $('moderation-empty').hidden = creatives.length > 0;
}

function moderationItem(c) {
  const item = h('li', { dataset: { creativeId: c.id } });
  const errorEl = h('p', { className: 'error', role: 'alert' });
  const approve = h('button', { type: 'button', className: 'approve', 'aria-label': `Approve “${c.headline}”` }, 'Approve');
  approve.addEventListener('click', () => runAction(approve, errorEl, () => moderate(c, item, 'approve')));
  item.append(
    assetElement(c),
    h('h4', {}, c.headline),
    c.body ? h('p', {}, c.body) : null,
    h('p', { className: 'meta' }, `Button “${c.cta_label}” · ${assetSummary(c)} · campaign ${c.campaign_id}`),
    approve,
    rejectForm(c, item, errorEl),
    errorEl,
  );
  return item;
}

function rejectForm(c, item, errorEl) {
  const inputId = `reject-reason-${c.id}`;
  const input = h('input', { id: inputId, className: 'reject-reason', autocomplete: 'off', required: true });
  const button = h('button', { type: 'submit', className: 'reject danger', 'aria-label': `Reject “${c.headline}”` }, 'Reject');
  const form = h('form', { className: 'reject-form', noValidate: true },
    h('label', { htmlFor: inputId }, 'Reason for rejection'), input, button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    runAction(button, errorEl, async () => {
      const reason = input.value.trim();
      if (!reason) {
        input.focus();
        throw new UserError('A reason is required, so the advertiser knows what to fix.');
      }
      await moderate(c, item, 'reject', { reason });
    });
  });
  return form;
}

async function moderate(c, item, action, body) {
  await api('POST', `/v1/creatives/${encodeURIComponent(c.id)}/${action}`, body ? { json: body } : {});
  // Keep keyboard focus in the queue instead of losing it with the removed item.
  const next = item.nextElementSibling ?? item.previousElementSibling;
  item.remove();
  $('moderation-empty').hidden = $('moderation-list').children.length > 0;
  (next?.querySelector('.approve') ?? $('moderation-refresh')).focus();
  announce(`Creative “${c.headline}” ${action === 'approve' ? 'approved' : 'rejected'}.`);
}

// --- advertisers (operator)

async function loadAdvertisers() {
  const { advertisers } = await api('GET', '/v1/advertisers');
  $('advertiser-list').replaceChildren(...advertisers.map(advertiserRow));
}

function advertiserRow(a) {
  return h('tr', { dataset: { advertiserId: a.id } },
    h('th', { scope: 'row' }, a.name),
    h('td', {}, h('code', {}, a.id)),
    h('td', {}, a.chat_number ?? '—'),
    h('td', {}, a.currency));
}

async function submitAdvertiser(event) {
  event.preventDefault();
  await runAction($('advertiser-submit'), $('advertiser-error'), async () => {
    const body = { name: fieldValue('advertiser-name'), currency: fieldValue('advertiser-currency').toUpperCase() };
    const chatNumber = fieldValue('advertiser-chat');
    if (chatNumber) body.chat_number = chatNumber;
    const created = await api('POST', '/v1/advertisers', { json: body });
    $('advertiser-form').reset();
    showApiKey(created.api_key, created.name);
    await runAction(null, $('advertiser-list-error'), loadAdvertisers);
  });
}

function showApiKey(key, name) {
  $('api-key-title').textContent = `API key for ${name}`;
  $('api-key-value').value = key;
  $('api-key-box').hidden = false;
  $('api-key-value').focus();
  $('api-key-value').select();
  announce(`API key for ${name} issued. Copy it now: it is shown only once.`);
}

function hideApiKey() {
  $('api-key-value').value = '';
  $('api-key-box').hidden = true;
}

async function copyApiKey() {
  const input = $('api-key-value');
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    announce('API key copied to the clipboard.');
  } catch {
    // The clipboard API needs a secure context (HTTPS or localhost); the key stays selected.
    announce('Copying is blocked here: the key is selected, press Ctrl+C (⌘C on a Mac) to copy it.');
  }
}

// --- wiring

function init() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => endSession());
  for (const nav of document.querySelectorAll('nav.tabs')) nav.addEventListener('click', onNavClick);

  $('campaign-refresh').addEventListener('click', refreshCampaigns);
  $('campaign-form').addEventListener('submit', submitCampaign);
  $('campaign-estimate').addEventListener('click', (event) =>
    runAction(event.currentTarget, $('form-error'), estimateCampaign));
  $('campaign-cancel').addEventListener('click', cancelEdit);
  $('history-close').addEventListener('click', closeHistory);

  $('creative-campaign').addEventListener('change', PANEL_LOADERS['panel-creatives']);
  $('creative-file').addEventListener('change', onCreativeFileChange);
  for (const id of ['creative-headline', 'creative-body', 'creative-cta']) $(id).addEventListener('input', updatePreviewText);
  $('creative-form').addEventListener('submit', submitCreative);

  $('report-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runAction($('report-load'), $('report-error'), loadReport);
  });
  $('invoice-form').addEventListener('submit', submitInvoice);

  $('moderation-refresh').addEventListener('click', PANEL_LOADERS['panel-moderation']);
  $('advertiser-form').addEventListener('submit', submitAdvertiser);
  $('copy-key').addEventListener('click', copyApiKey);
  $('hide-key').addEventListener('click', () => {
    hideApiKey();
    $('advertiser-name').focus(); // the focused button just disappeared with the box
  });

  updatePreviewText();
  resumeSession();
}

init();
