// A cluster worker for test/unit/worker-fleet.test.ts: the worker side of the CLI, without the CLI.
import { fileSource, runWorker } from '../../src/supervisor/index.js';

await runWorker(fileSource(process.env.PCL_FLEET_CONFIG as string), 'error');
