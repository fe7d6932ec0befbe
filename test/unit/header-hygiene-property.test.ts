import { headerHygieneProperties } from '../properties/header-hygiene.js';
import { describeProperties } from '../properties/node-test.js';

// The properties live in test/properties/ so that scripts/fuzz.ts runs them for longer.
describeProperties(headerHygieneProperties);
