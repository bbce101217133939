// The built CLI's entry (`dist/cli/latchkey.js`): what `bin/latchkey.js` runs when latchkey is
// installed as a dependency, and what the container image runs.
import { cli } from './main.ts'

await cli(process.argv.slice(2))
