-- section: MLP neurons
-- title: Top-activating tokens of MiniLM's MLP neuron 100, layer 3
-- chart: table
-- note: The ten tokens on which neuron 100 of minilm's layer-3 MLP fires hardest, with their sentences; edit act[101] (SQL lists are 1-based) and layer to inspect another neuron.
with top as (
    select model, dataset, doc_id, pos, act[101] as activation
    from activations
    where model = 'minilm' and hook = 'mlp_post' and layer = 3
    order by activation desc
    limit 10
)
select t.token, top.activation, top.doc_id, top.pos, d.text
from top
join tokens t using (model, dataset, doc_id, pos)
join documents d using (model, dataset, doc_id)
order by top.activation desc, top.doc_id, top.pos
