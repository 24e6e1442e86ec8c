/** Every figure of the report, in reading order, skipping those without data. */
import type { RunData } from './load-run.ts';
import type { Figure } from './figure-common.ts';
import { correlationFigure, precisionMetricFigure, reliabilityFigure } from './figures.ts';
import { correlationLayersFigure } from './figures-correlation-layers.ts';
import { deadFigure, salientFigure } from './figures-layers.ts';
import { completenessFigure } from './figures-salience.ts';

export function buildFigures(runs: RunData[]): Figure[] {
  return [
    precisionMetricFigure(runs, 'accuracy'),
    precisionMetricFigure(runs, 'mean_confidence'),
    precisionMetricFigure(runs, 'ace'),
    reliabilityFigure(runs),
    correlationFigure(runs),
    correlationLayersFigure(runs),
    deadFigure(runs),
    salientFigure(runs),
    completenessFigure(runs),
  ].filter((f): f is Figure => f !== null);
}
