// Every page unit test in one Node process: what StrykerJS runs for each mutant (one process
// starts far faster than `node --test`'s one per file). `node --test tests/js/` runs the same tests.
import "./export.test.mjs";
import "./history.test.mjs";
import "./pacer.test.mjs";
