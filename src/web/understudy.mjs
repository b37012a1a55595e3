// ES module entry. understudy.js is a classic script (it defines globalThis.Understudy and has no
// `export`, so one file also works from a plain <script> tag); importing it for its side effect
// and re-exporting keeps a single source of truth.
import "./understudy.js";

const Understudy = globalThis.Understudy;
export default Understudy;
export const { connect, adapters, _internal } = Understudy;
