// The watch page's controls and readouts, bound to a player (the MSE engine or the native
// fallback; both offer the same small interface).

const $ = (id) => document.getElementById(id);

export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const s = Math.floor(seconds % 60);
  const m = Math.floor(seconds / 60) % 60;
  const h = Math.floor(seconds / 3600);
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
}

// Icons drawn inline: emoji glyphs are missing from many systems' fonts.
const ICONS = {
  sound: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 9h4l5-4v14l-5-4H3z" ' +
    'fill="currentColor"/><path d="M15.5 8.5a5 5 0 0 1 0 7M18 6a8.5 8.5 0 0 1 0 12" ' +
    'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>',
  muted: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 9h4l5-4v14l-5-4H3z" ' +
    'fill="currentColor"/><path d="M16 9l6 6M22 9l-6 6" stroke="currentColor" ' +
    'stroke-width="2" stroke-linecap="round"/></svg>',
  fullscreen: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 9V4h5M15 4h5v5M20 ' +
    '15v5h-5M9 20H4v-5" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round"/></svg>',
};

export function bindControls(player, video) {
  const play = $("play");
  const mute = $("mute");
  const seek = $("seek");
  const time = $("time");
  const live = $("live");
  const select = $("quality-select");
  const fullscreen = $("fullscreen");
  fullscreen.innerHTML = ICONS.fullscreen;
  let dragging = false;

  for (const rung of [...player.rungs].reverse()) {
    const option = document.createElement("option");
    option.value = rung.name;
    option.textContent = rung.name;
    select.append(option);
  }
  select.disabled = player.rungs.length === 0 || !player.setQuality;
  select.addEventListener("change", () => player.setQuality(select.value));

  const togglePlay = () => {
    if (video.paused) player.play();
    else video.pause();
  };
  play.addEventListener("click", togglePlay);
  mute.addEventListener("click", () => {
    video.muted = !video.muted;
    render();
  });
  live.addEventListener("click", () => player.goLive());
  fullscreen.addEventListener("click", () => {
    const box = $("player");
    if (document.fullscreenElement) document.exitFullscreen();
    else box.requestFullscreen?.();
  });

  seek.addEventListener("pointerdown", () => { dragging = true; player.refreshPlaylist?.(); });
  seek.addEventListener("focus", () => player.refreshPlaylist?.());
  seek.addEventListener("input", () => {
    dragging = true;
    time.textContent = label(Number(seek.value));
  });
  seek.addEventListener("change", () => {
    dragging = false;
    const range = player.range();
    if (!range) return;
    const t = range[0] + Number(seek.value);
    if (player.live && t >= range[1] - 1) player.goLive();
    else player.seek(t);
  });
  seek.addEventListener("keydown", (event) => {
    const range = player.range();
    if (!range) return;
    const step = { ArrowLeft: -5, ArrowRight: 5, PageDown: -30, PageUp: 30 }[event.key];
    if (step === undefined) return;
    event.preventDefault();
    player.seek(Math.min(Math.max(video.currentTime + step, range[0]), range[1] - 0.1));
  });

  // Keyboard on the video itself: k / space play and pause, m mutes, f fullscreen.
  $("player").addEventListener("keydown", (event) => {
    if (event.target !== video && event.target !== $("player")) return;
    const action = { " ": togglePlay, k: togglePlay, m: () => mute.click(),
      f: () => fullscreen.click() }[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  function label(offset) {
    const range = player.range();
    if (player.live && range) return `-${formatTime(range[1] - range[0] - offset)}`;
    return `${formatTime(offset)} / ${formatTime(range ? range[1] - range[0] : 0)}`;
  }

  function render() {
    const paused = video.paused;
    play.textContent = paused ? "▶" : "❚❚";
    play.setAttribute("aria-label", paused ? "Play" : "Pause");
    mute.innerHTML = video.muted ? ICONS.muted : ICONS.sound;
    mute.setAttribute("aria-label", video.muted ? "Unmute" : "Mute");
    mute.setAttribute("aria-pressed", String(video.muted));

    const range = player.range();
    if (range && !dragging) {
      const length = Math.max(0, range[1] - range[0]);
      seek.max = length.toFixed(1);
      seek.value = Math.min(length, Math.max(0, video.currentTime - range[0])).toFixed(1);
      seek.setAttribute("aria-valuetext", label(Number(seek.value)));
      time.textContent = label(Number(seek.value));
    }
    seek.disabled = !range;

    live.hidden = !player.live;
    live.setAttribute("aria-pressed", String(Boolean(player.atLiveEdge)));
    live.classList.toggle("at-edge", Boolean(player.atLiveEdge));

    const name = player.rendition ?? player.target ?? "–";
    $("quality").textContent = player.auto ? `Auto (${name})` : name;
    if (select.value !== (player.auto ? "auto" : player.target)) {
      select.value = player.auto ? "auto" : player.target;
    }
    $("delay-row").hidden = !player.live;
    $("delay").textContent = player.delay === null || player.delay === undefined
      ? "–" : `${player.delay.toFixed(1)} s`;
    $("status").textContent = player.status ?? "–";
    $("viewers").textContent = player.viewers ?? "–";
  }

  player.addEventListener("update", render);
  for (const name of ["play", "pause", "volumechange", "timeupdate"]) {
    video.addEventListener(name, render);
  }
  render();
}

/** Show a message over the player (errors, "waiting for the stream"). */
export function showMessage(text) {
  const box = $("player-message");
  box.textContent = text ?? "";
  box.hidden = !text;
}
