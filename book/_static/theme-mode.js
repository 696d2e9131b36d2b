// The theme reads the light/dark mode from localStorage; on a reader's first visit there is none and
// it logs "Got invalid theme mode" as a console error. Start from "auto" (the theme's default).
if (!document.documentElement.dataset.mode) { document.documentElement.dataset.mode = "auto"; }
