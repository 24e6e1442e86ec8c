import { loadTokenizer, splitLabels } from './sources/tokenizer.ts';

const tok = await loadTokenizer('/work/wt/shared/models/stories260K-onnx');
const ctx = 'Respond with True or False only.\nIs the sky blue?\nAnswer:';
console.log(splitLabels(tok, [' True', ' False']), splitLabels(tok, [' True', ' False'], ctx), splitLabels(tok, [' True', ' Trust'], ctx), splitLabels(tok, [' True', ' True!'], ctx), splitLabels(tok, [' yes', ' no', ' nope'], ctx));
