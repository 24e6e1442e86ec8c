/**
 * Built-in True/False questions with gold labels for the demo model (which has random weights,
 * so its answers mean nothing: the prompts exercise the pipeline, not the model). Generated from
 * fixed templates so the set is the same everywhere; written beside the demo model as
 * prompts.jsonl with columns prompt, gold.
 */
export interface DemoPrompt {
  prompt: string;
  gold: 'True' | 'False';
}

const FACTS: DemoPrompt[] = [
  { prompt: 'is the sun a star', gold: 'True' },
  { prompt: 'is water wet', gold: 'True' },
  { prompt: 'do fish live in water', gold: 'True' },
  { prompt: 'is ice colder than steam', gold: 'True' },
  { prompt: 'is a week seven days long', gold: 'True' },
  { prompt: 'do cats have six legs', gold: 'False' },
  { prompt: 'is the moon made of cheese', gold: 'False' },
  { prompt: 'is paris the capital of spain', gold: 'False' },
  { prompt: 'can a dog fly without help', gold: 'False' },
  { prompt: 'is snow usually hot', gold: 'False' },
];

/** At least 64 prompts, alternating templates; gold is computed, not typed in. */
export function demoPrompts(): DemoPrompt[] {
  const out: DemoPrompt[] = [...FACTS];
  for (let i = 0; i < 18; i++) {
    const a = 1 + (i % 9);
    const b = 2 + Math.floor(i / 2); // (a, b) pairs are all distinct for i < 18
    const claimed = i % 2 === 1 ? a + b + 1 : a + b;
    out.push({ prompt: `is ${a} plus ${b} equal to ${claimed}`, gold: claimed === a + b ? 'True' : 'False' });
  }
  for (let i = 0; i < 18; i++) {
    const a = 3 + ((i * 5) % 17);
    const b = 2 + ((i * 11) % 19);
    out.push({ prompt: `is ${a} bigger than ${b}`, gold: a > b ? 'True' : 'False' });
  }
  for (let i = 0; i < 18; i++) {
    const n = 10 + i * 7;
    const askEven = i % 4 < 2; // n's parity alternates with i, so half the claims are false
    out.push({ prompt: `is ${n} an ${askEven ? 'even' : 'odd'} number`, gold: (n % 2 === 0) === askEven ? 'True' : 'False' });
  }
  return out;
}

export async function* demoPromptStream(): AsyncGenerator<DemoPrompt> {
  for (const p of demoPrompts()) yield p;
}

/** prompts.jsonl contents: one {"prompt","gold"} object per line. */
export function demoPromptsJsonl(): string {
  return demoPrompts().map((p) => JSON.stringify(p)).join('\n') + '\n';
}
