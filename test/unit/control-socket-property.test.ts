import { controlSocketProperties } from '../properties/control-socket.js';
import { describeProperties } from '../properties/node-test.js';

// The properties live in test/properties/ so that scripts/fuzz.ts runs them for longer.
describeProperties(controlSocketProperties);
