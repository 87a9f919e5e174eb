// CoreMachine dashboard: the live job page. Everything else is plain HTML forms and links.
// The job's resumable event stream (SSE) says when something happened; the job's
// status (the same JSON API) says where the stages stand. EventSource reconnects by
// itself and sends Last-Event-ID, so a dropped connection resumes where it stopped.
"use strict";

(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const jobId = root.dataset.jobId;
  const liveState = document.getElementById("live-state");
  const history = new Map(); // stage -> [[t, done], ...] for rate and time left
  const WINDOW_MS = 15000;
  let running = null; // {stage, processing, queued} from the diagnosis
  let refreshTimer = null;
  let lastRefresh = 0;
  let ended = root.dataset.terminal === "true";

  showDone();
  if (ended) return;

  function showDone() {
    const params = new URLSearchParams(location.search);
    const done = params.get("done");
    const notice = document.getElementById("done-notice");
    if (done && notice) {
      const words = {
        cancelled: "The job was cancelled.",
        resubmitted: "Resubmitted: " + (params.get("requeued") || "0") + " tasks run again.",
        submitted: "Job submitted.",
        exists: "A job with these parameters exists already: here it is.",
      };
      notice.textContent = words[done] || "";
      notice.hidden = !notice.textContent;
    }
  }

  function setLive(text) {
    if (liveState) liveState.textContent = text;
  }

  function fmtSeconds(s) {
    if (!isFinite(s)) return "—";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function stageElement(stage) {
    let el = root.querySelector('.stage[data-stage="' + stage + '"]');
    if (el) return el;
    // A stage that started after the page was rendered: built like the others.
    const first = root.querySelector(".stage");
    const holder = document.getElementById("stages-live");
    if (!holder) return null;
    el = document.createElement("div");
    el.className = "stage";
    el.dataset.stage = String(stage);
    el.innerHTML = first ? first.innerHTML : "";
    if (!first) {
      el.innerHTML =
        '<h3>Stage <span class="stage-status"></span></h3>' +
        '<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0">' +
        '<span class="seg completed"></span><span class="seg failed"></span><span class="seg cancelled"></span></div>' +
        '<p class="counts-line"><span data-field="percent"></span> · total <span data-field="total"></span>' +
        ' · completed <span data-field="completed"></span> · failed <span data-field="failed"></span>' +
        ' · running <span data-field="running"></span> · waiting <span data-field="waiting"></span>' +
        ' · rate <span data-field="rate">—</span> · time left <span data-field="eta">—</span></p>';
    }
    const h = el.querySelector("h3");
    if (h) h.firstChild.textContent = "Stage " + stage + " ";
    const bar = el.querySelector(".bar");
    if (bar) bar.setAttribute("aria-label", "Stage " + stage + " progress");
    el.querySelectorAll("a").forEach((a) => {
      a.href = "/ui/jobs/" + jobId + "/tasks?stage=" + stage;
    });
    holder.appendChild(el);
    const none = document.getElementById("no-stage");
    if (none) none.remove();
    return el;
  }

  function field(el, name, value) {
    const f = el.querySelector('[data-field="' + name + '"]');
    if (f) f.textContent = value;
  }

  function rate(stage, done, now) {
    const points = history.get(stage) || [];
    points.push([now, done]);
    while (points.length > 2 && now - points[0][0] > WINDOW_MS) points.shift();
    history.set(stage, points);
    const [t0, d0] = points[0];
    return now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
  }

  function render(job) {
    const now = Date.now();
    const status = document.getElementById("job-status");
    if (status) {
      status.innerHTML = "";
      const span = document.createElement("span");
      span.className = "status status-" + job.status;
      span.textContent = job.status.replace(/_/g, " ");
      status.appendChild(span);
    }
    const stageNo = document.getElementById("job-stage");
    if (stageNo) stageNo.textContent = job.stage;
    for (const s of job.stages) {
      const el = stageElement(s.stage);
      if (!el) continue;
      const total = s.task_count;
      const done = s.completed + s.failed + s.cancelled;
      const pct = total ? Math.floor((100 * done) / total) : 0;
      const width = (n) => (total ? ((100 * n) / total).toFixed(2) : "0") + "%";
      el.querySelector(".seg.completed").style.width = width(s.completed);
      el.querySelector(".seg.failed").style.width = width(s.failed);
      el.querySelector(".seg.cancelled").style.width = width(s.cancelled);
      el.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
      const st = el.querySelector(".stage-status");
      if (st) st.textContent = s.status;
      field(el, "percent", pct + " %");
      field(el, "total", total);
      field(el, "completed", s.completed);
      field(el, "failed", s.failed);
      const remaining = Math.max(0, total - done);
      const busy = running && running.stage === s.stage ? running.processing : null;
      field(el, "running", busy === null ? (remaining ? "—" : 0) : busy);
      field(el, "waiting", busy === null ? remaining : Math.max(0, remaining - busy));
      const perSecond = rate(s.stage, done, now);
      field(el, "rate", perSecond > 0 ? perSecond.toFixed(1) + " tasks/s" : "—");
      field(el, "eta", remaining === 0 ? "0 s" : perSecond > 0 ? fmtSeconds(remaining / perSecond) : "—");
    }
  }

  async function refresh() {
    refreshTimer = null;
    lastRefresh = Date.now();
    try {
      const r = await fetch("/api/jobs/status/" + jobId, { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) {
      /* the next event or tick tries again */
    }
  }

  // At most one status read per second, however many events arrive.
  function scheduleRefresh() {
    if (refreshTimer !== null) return;
    const wait = Math.max(0, 1000 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(refresh, wait);
  }

  async function diagnose() {
    if (ended) return;
    try {
      const r = await fetch("/api/jobs/" + jobId + "/diagnosis", { credentials: "same-origin" });
      if (r.ok) {
        const d = await r.json();
        const c = d.current_stage || {};
        running = c.planned ? { stage: c.stage, processing: c.processing, queued: c.queued } : null;
        scheduleRefresh();
      }
    } catch (e) {
      /* try again later */
    }
    setTimeout(diagnose, 5000);
  }

  const source = new EventSource("/api/jobs/" + jobId + "/events");
  source.onopen = () => setLive("live");
  source.onmessage = scheduleRefresh;
  source.onerror = () => {
    if (!ended) setLive("reconnecting…");
  };
  for (const type of ["job_created", "stage_started", "stage_completed", "task_completed",
    "task_failed", "task_retrying", "task_progress", "task_started", "job_waiting",
    "job_resumed", "job_resubmitted", "job_completed", "job_failed", "job_cancelled"]) {
    source.addEventListener(type, scheduleRefresh);
  }
  source.addEventListener("end", () => {
    ended = true;
    source.close();
    running = null;
    setLive("ended (the job is done; reload for its result)");
    refresh();
  });
  diagnose();
  setInterval(scheduleRefresh, 5000); // also when the stream is quiet
})();
