import { clientHelloProperties } from '../properties/client-hello.js';
import { describeProperties } from '../properties/node-test.js';

// The properties live in test/properties/ so that scripts/fuzz.ts runs them for longer.
describeProperties(clientHelloProperties);
